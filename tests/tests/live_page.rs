//! The live page in a real browser (Debian's headless Chromium through chromedriver): it
//! loads, every panel shows data (the alarms list included: the host runs the shipped
//! alarm rules), and a new point, a late-rejected row and a new alarm with its evidence
//! arrive over the WebSocket without a reload. Saves a screenshot to
//! `artifacts/live-page.png`.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use iot_host::live::LiveHub;
use iot_host::pipeline::Pipeline;
use iot_simulator::{publish, PublishConfig, SimConfig};
use system_tests::alarm_oracle;
use system_tests::fixture::{repo_root, Sink, TestScope};
use system_tests::harness::{produce, run_host_observed_on, SystemTopics};
use system_tests::redis_read;
use system_tests::webdriver::{free_port, Browser};

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 24 * 60 * MINUTE_MS;
/// 2020-01-01T00:00:00Z.
const RUN_START_MS: i64 = 1_577_836_800_000;
const DAYS: u32 = 3;
const RUN_END_MS: i64 = RUN_START_MS + DAYS as i64 * DAY_MS;

const PANELS: [&str; 12] = [
    "alarms",
    "late-W1",
    "raw-TH1",
    "AggDay-TH1-chart",
    "raw-HVAC1-table",
    "raw-Etot",
    "raw-Mov1",
    "AggDay-HVAC1",
    "AggDayDiff-Wtot",
    "AggDayRest-Etot",
    "AggDay-TH1",
    "LateRej-W1",
];

fn reading(site: &str, sensor: &str, ts_ms: i64, value: f64) -> String {
    let ts = chrono::DateTime::from_timestamp_millis(ts_ms)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%SZ");
    format!(r#"{{"site":"{site}","sensor":"{sensor}","ts":"{ts}","value":{value}}}"#)
}

fn points_of(panel: &str) -> String {
    format!("return Number((document.getElementById('panel-{panel}')||{{dataset:{{}}}}).dataset.points||0)")
}

async fn in_browser<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("browser step")
}

/// The charts are uPlot's (served by the host, no CDN): each chart panel draws on a canvas;
/// hovering shows a value with its unit; the wheel zooms; the range picker shows the last
/// day; markers (alarms, motion events) are drawn.
fn check_the_charts(browser: &Browser) {
    let charts = browser.eval(
        "return [document.querySelectorAll('.panel .chart .uplot canvas').length, \
         document.querySelectorAll('.panel .chart').length, typeof uPlot]",
    );
    assert_eq!(
        charts[2], "function",
        "uPlot is loaded from the host: {charts}"
    );
    assert!(
        charts[0].as_i64() >= charts[1].as_i64() && charts[1].as_i64() >= Some(8),
        "every chart panel draws on a canvas: {charts}"
    );
    let hover = browser.eval(
        "const u = window.__charts.get('raw-TH1'); \
         u.setCursor({left: u.bbox.width / devicePixelRatio / 2, top: 10}); \
         return u.root.querySelector('.u-legend .u-series:nth-child(2) .u-value').textContent",
    );
    let hover = hover.as_str().unwrap_or_default();
    assert!(
        hover.ends_with(" °C") && hover.len() > 3,
        "hover shows the value with its unit: {hover:?}"
    );
    // uPlot applies a new scale after the current task: each check waits for its effect.
    const CHART_TIMEOUT: Duration = Duration::from_secs(30);
    browser.eval(
        "const u = window.__charts.get('raw-Etot'); window.__before = u.scales.x.max - u.scales.x.min; \
         u.setCursor({left: u.bbox.width / devicePixelRatio / 2, top: 10}); \
         u.over.dispatchEvent(new WheelEvent('wheel', {deltaY: -100, bubbles: true, cancelable: true})); \
         return true",
    );
    browser.wait_for(
        "const u = window.__charts.get('raw-Etot'); return u.scales.x.max - u.scales.x.min < window.__before",
        CHART_TIMEOUT,
        "the wheel to zoom the Etot chart in",
    );
    browser.eval(
        "const r = document.getElementById('range'); r.value = '1'; r.onchange(); return true",
    );
    browser.wait_for(
        &format!(
            "const u = window.__charts.get('raw-TH1'); return u.scales.x.max - u.scales.x.min === {DAY_MS}"
        ),
        CHART_TIMEOUT,
        "the range picker to show exactly the last day",
    );
    browser.eval(
        "const r = document.getElementById('range'); r.value = '0'; r.onchange(); return true",
    );
    browser.wait_for(
        "return Number(document.getElementById('panel-raw-TH1').dataset.markers || 0) > 0",
        CHART_TIMEOUT,
        "alarm and motion markers on the TH1 chart",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_page_shows_every_panel_and_pushes_a_new_point_and_a_rejected_row_without_reload() {
    let mut scope = TestScope::new("live_page_in_a_browser");
    let topics = SystemTopics::create(&mut scope, 1).await;
    let bootstrap = scope.services.kafka_bootstrap.clone();
    let fleet = SimConfig {
        sites: 1,
        seed: 3,
        start_ms: RUN_START_MS,
        days: Some(DAYS),
        site_prefix: format!("{}-s", scope.id),
    };
    let site = format!("{}-s1", scope.id);
    publish(
        PublishConfig::fast(&bootstrap, &topics.readings, fleet),
        Arc::new(AtomicBool::new(false)),
    )
    .await
    .expect("simulator");

    let pipeline = Arc::new(
        Pipeline::parse(&alarm_oracle::reference_with_shipped_alarms()).expect("pipeline"),
    );
    let mut hub = LiveHub::new();
    run_host_observed_on(&scope, &topics, 2000, &mut hub, pipeline.clone()).await;
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (url, prefix, sender) = (
        scope.services.redis_url.clone(),
        scope.key_prefix(),
        hub.sender(),
    );
    let server = tokio::spawn(async move {
        iot_host::live::server::serve(addr, &url, prefix, sender, None).await
    });

    let page = format!("http://{addr}/?site={site}");
    let browser = in_browser(move || {
        let browser = Browser::launch();
        browser.open(&page);
        browser.wait_for(
            "return document.body.dataset.ready === '1' && document.body.dataset.live === '1'",
            Duration::from_secs(120),
            "the page to load and connect",
        );
        for panel in PANELS {
            browser.wait_for(
                &format!("{} > 0", points_of(panel)),
                Duration::from_secs(120),
                &format!("panel {panel} to show data"),
            );
        }
        check_the_charts(&browser);
        browser.eval("window.__sameLoad = 42; return true");
        browser
    })
    .await;
    let before_th1 = browser.eval(&points_of("raw-TH1")).as_i64().unwrap();
    let before_rejected = browser.eval(&points_of("LateRej-W1")).as_i64().unwrap();
    let before_alarms = browser.eval(&points_of("alarms")).as_i64().unwrap();

    // One new 15-minute point, one W1 reading ten days late, and motion at 01:30 UTC
    // (02:30 at the NightMotion rule's +01:00: night).
    let new_step = RUN_END_MS + 15 * MINUTE_MS;
    let night_motion = RUN_END_MS + 90 * MINUTE_MS;
    let payloads = [
        reading(&site, "TH1", new_step, 21.5),
        reading(&site, "W1", RUN_END_MS - 10 * DAY_MS + 15 * MINUTE_MS, 0.5),
        reading(&site, "Mov1", night_motion, 1.0),
    ];
    produce(&bootstrap, &topics.readings, 0, &site, &payloads).await;
    let stats = run_host_observed_on(&scope, &topics, 2000, &mut hub, pipeline).await;
    assert_eq!(stats.late_rejected, 1);
    assert!(stats.alarms_raised >= 1, "the night motion raised an alarm");

    let shot = repo_root().join("artifacts/live-page.png");
    let shot_path = shot.clone();
    in_browser(move || {
        browser.wait_for(
            &format!(
                "return {} > {before_th1}",
                points_of("raw-TH1").trim_start_matches("return ")
            ),
            Duration::from_secs(120),
            "the new TH1 point",
        );
        browser.wait_for(
            &format!(
                "return {} > {before_rejected}",
                points_of("LateRej-W1").trim_start_matches("return ")
            ),
            Duration::from_secs(120),
            "the late-rejected row",
        );
        browser.wait_for(
            &format!(
                "return {} > {before_alarms}",
                points_of("alarms").trim_start_matches("return ")
            ),
            Duration::from_secs(120),
            "the new alarm",
        );
        // The newest rows: the motion raised NightMotion (and, on a day with no energy
        // yet, LowEnergyMotion) at the same instant.
        let rows = browser.eval(
            "return [...document.querySelectorAll('#panel-alarms tbody tr')].slice(0, 3).map(r => r.textContent)",
        );
        let rows: Vec<&str> = rows
            .as_array()
            .map(|rows| rows.iter().filter_map(|r| r.as_str()).collect())
            .unwrap_or_default();
        assert!(
            rows.iter().any(|row| row.starts_with("2020-01-04 01:30")
                && row.contains("NightMotion")
                && row.contains("motion at 02:30 local time")),
            "a newest alarm row names its rule and shows its evidence: {rows:?}"
        );
        assert_eq!(
            browser.eval("return window.__sameLoad"),
            serde_json::json!(42),
            "no reload happened"
        );
        let cell = browser
            .eval("return document.querySelector('#panel-LateRej-W1 tbody tr td').textContent");
        assert!(
            cell.as_str().unwrap().starts_with("2019-12-2"),
            "the rejected row shows its own UTC time: {cell}"
        );
        browser.screenshot(&shot_path);
    })
    .await;
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "the screenshot has content"
    );
    server.abort();
}

/// The page's chart library is the uPlot that scripts/versions.env pins (vendored by
/// scripts/vendor-uplot), with its licence.
#[test]
fn the_vendored_chart_library_is_the_pinned_uplot_version_with_its_licence() {
    let root = repo_root();
    let versions = std::fs::read_to_string(root.join("scripts/versions.env")).unwrap();
    let pinned = versions
        .lines()
        .find_map(|l| l.strip_prefix("UPLOT_VERSION="))
        .expect("UPLOT_VERSION in scripts/versions.env");
    let vendor = root.join("host/src/live/assets/vendor");
    let script = std::fs::read_to_string(vendor.join("uPlot.iife.min.js")).unwrap();
    assert!(
        script
            .lines()
            .next()
            .unwrap_or_default()
            .contains(&format!("(v{pinned})")),
        "host/src/live/assets/vendor holds uPlot {pinned}: run scripts/vendor-uplot"
    );
    let licence = std::fs::read_to_string(vendor.join("LICENSE")).unwrap();
    assert!(licence.contains("MIT License"), "{licence}");
}

/// The live page's queries on a Redis Cluster: the sites (`TS.QUERYINDEX`) and the alarms
/// (`TS.MREVRANGE … FILTER`) are asked of every shard, a series (`TS.REVRANGE`) of the
/// shard of its site's slot. Two sites, so their series are spread over the shards; every
/// answer must equal what the cluster holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_redis_cluster_the_live_pages_api_serves_every_sites_series_and_alarms() {
    const SITES: u32 = 4;
    let mut scope = TestScope::on("live_api_on_a_cluster", Sink::RedisCluster);
    let topics = SystemTopics::create(&mut scope, 2).await;
    let bootstrap = scope.services.kafka_bootstrap.clone();
    let fleet = SimConfig {
        sites: SITES,
        seed: 5,
        start_ms: RUN_START_MS,
        days: Some(DAYS),
        site_prefix: format!("{}-s", scope.id),
    };
    publish(
        PublishConfig::fast(&bootstrap, &topics.readings, fleet),
        Arc::new(AtomicBool::new(false)),
    )
    .await
    .expect("simulator");
    let pipeline = Arc::new(
        Pipeline::parse(&alarm_oracle::reference_with_shipped_alarms()).expect("pipeline"),
    );
    let mut hub = LiveHub::new();
    run_host_observed_on(&scope, &topics, 2000, &mut hub, pipeline).await;
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (url, prefix, sender) = (
        scope.services.redis_url.clone(),
        scope.key_prefix(),
        hub.sender(),
    );
    tokio::spawn(
        async move { iot_host::live::server::serve(addr, &url, prefix, sender, None).await },
    );

    let mut conn = scope.redis_conn().await;
    let stored = redis_read::all_series(&mut conn, &scope.key_prefix()).await;
    let sites: Vec<String> = (1..=SITES).map(|n| format!("{}-s{n}", scope.id)).collect();
    let get = |path: String| async move {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            match tokio::task::spawn_blocking({
                let url = format!("http://{addr}{path}");
                move || {
                    ureq::get(&url)
                        .call()
                        .map(|mut r| r.body_mut().read_json::<serde_json::Value>())
                }
            })
            .await
            .unwrap()
            {
                Ok(Ok(json)) => return json,
                other if std::time::Instant::now() > deadline => {
                    panic!("GET {path} did not answer within a minute: {other:?}")
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    };

    let served: Vec<String> = serde_json::from_value(get("/api/sites".into()).await).unwrap();
    let ours: Vec<&String> = served.iter().filter(|s| sites.contains(s)).collect();
    assert_eq!(
        ours,
        sites.iter().collect::<Vec<_>>(),
        "every site, from every shard"
    );

    let mut alarms_served = 0;
    for site in &sites {
        let points: Vec<(i64, f64)> = serde_json::from_value(
            get(format!("/api/series?site={site}&sensor=TH1&kind=raw")).await,
        )
        .unwrap();
        let key = (site.clone(), "TH1".to_owned(), "raw".to_owned());
        let expected: Vec<(i64, f64)> = stored[&key].iter().map(|(t, v)| (*t, *v)).collect();
        let newest = &expected[expected.len().saturating_sub(points.len())..];
        assert!(!points.is_empty(), "{site}'s TH1 series is served");
        assert_eq!(points, newest, "{site}'s TH1 points are the stored ones");

        let alarms: Vec<(i64, String, f64)> =
            serde_json::from_value(get(format!("/api/alarms?site={site}")).await).unwrap();
        let stored_alarms: usize = stored
            .iter()
            .filter(|((s, _, kind), _)| s == site && kind == "Alarm")
            .map(|(_, values)| values.len())
            .sum();
        assert_eq!(
            alarms.len(),
            stored_alarms.min(200),
            "{site}'s alarms are served"
        );
        alarms_served += alarms.len();
    }
    assert!(alarms_served > 0, "the run raised alarms to serve");
}
