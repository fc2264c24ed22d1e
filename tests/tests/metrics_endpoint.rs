//! `/metrics`: the host's Prometheus metrics, scraped while it runs and checked against
//! what the test sent (records per partition, dead letters per reason, readings on time)
//! and against what an independent reader finds on the output topics; then a real
//! Prometheus scrapes the host and answers every query of the Grafana dashboard "IoT host".

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use system_tests::fixture::{plugin_dir, repo_root, TestScope};
use system_tests::harness::{produce, SystemTopics};
use system_tests::live_host::LiveHost;
use system_tests::metrics_scrape::{partitions_at, scrape, scrape_text, total, Samples};
use system_tests::prometheus::Prometheus;
use system_tests::topic::read_all;
use system_tests::webdriver::free_port;

const STEP_MS: i64 = 15 * 60_000;
/// 2020-03-01T00:00:00Z.
const MARCH_1_MS: i64 = 1_583_020_800_000;
/// Two days and a bit of TH1 readings per site, in order: day 1 closes and is emitted.
const STEPS: i64 = 2 * 96 + 4;
/// The dashboard of the host's metrics (Prometheus data source).
const DASHBOARD: &str = "grafana/dashboards/iot-host.json";
/// Generous: a slow machine only takes longer.
const TIMEOUT: Duration = Duration::from_secs(300);

fn reading(site: &str, step: i64) -> String {
    let ts = chrono::DateTime::from_timestamp_millis(MARCH_1_MS + step * STEP_MS)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%SZ");
    format!(
        r#"{{"site":"{site}","sensor":"TH1","ts":"{ts}","value":{}}}"#,
        20.0 + (step % 7) as f64
    )
}

/// Scrapes until `done` holds, keeping the host alive; panics naming `what` at the deadline.
async fn scrape_until(
    host: &mut LiveHost,
    base: &str,
    what: &str,
    done: impl Fn(&Samples) -> bool,
) -> Samples {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        host.assert_running();
        if let Some(metrics) = scrape(base) {
            if done(&metrics) {
                return metrics;
            }
            let shown: BTreeMap<&String, &f64> = metrics
                .iter()
                .filter(|(name, _)| !name.contains("_bucket"))
                .collect();
            assert!(
                Instant::now() < deadline,
                "{what} within {TIMEOUT:?}; last scrape: {shown:#?}"
            );
        }
        assert!(
            Instant::now() < deadline,
            "{base}/metrics did not answer within {TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_was_sent_and_prometheus_answers_every_dashboard_query() {
    let mut scope = TestScope::new("metrics_endpoint");
    let topics = SystemTopics::create(&mut scope, 2).await;
    let (site_a, site_b) = (format!("{}-a", scope.id), format!("{}-b", scope.id));
    let mut on_partition_0: Vec<String> = (1..=STEPS).map(|k| reading(&site_a, k)).collect();
    // Two records no parser takes, among the good ones.
    on_partition_0.insert(10, "this is not a reading".to_owned());
    on_partition_0.insert(50, "{\"site\": broken json".to_owned());
    let on_partition_1: Vec<String> = (1..=STEPS).map(|k| reading(&site_b, k)).collect();
    let bootstrap = &scope.services.kafka_bootstrap;
    produce(bootstrap, &topics.readings, 0, &site_a, &on_partition_0).await;
    produce(bootstrap, &topics.readings, 1, &site_b, &on_partition_1).await;

    let addr = format!("127.0.0.1:{}", free_port());
    let log = std::env::temp_dir().join(format!("{}-host.log", scope.id));
    let plugins = plugin_dir();
    let mut host = LiveHost::start(
        &scope,
        &topics,
        &log,
        &["--http", &addr, "--plugins", plugins.to_str().unwrap()],
    );
    let base = format!("http://{addr}");

    let sent = (on_partition_0.len() + on_partition_1.len()) as f64;
    let metrics = scrape_until(
        &mut host,
        &base,
        "every record read and its batch stored",
        |m| {
            total(m, "iot_records_read_total", &[]) >= sent
            && total(m, "iot_records_published_total", &["topic=\"dead-letter\""]) >= 2.0
            // Both partitions' lag reported (the client's statistics come every second)
            // and nothing left to read.
            && m.keys().filter(|k| k.starts_with("iot_consumer_lag{")).count() == 2
            && total(m, "iot_consumer_lag", &[]) == 0.0
            && total(m, "iot_batch_durable_seconds_count", &[]) >= 1.0
            // Every value emitted is published (its batch is durable).
            && total(m, "iot_outputs_emitted_total", &[]) > 0.0
            && total(m, "iot_records_published_total", &["topic=\"aggregates\""])
                == total(m, "iot_outputs_emitted_total", &[])
        },
    )
    .await;
    let read = |partition: i32| {
        total(
            &metrics,
            "iot_records_read_total",
            &[&format!("partition=\"{partition}\"")],
        )
    };
    assert_eq!(read(0), on_partition_0.len() as f64);
    assert_eq!(read(1), on_partition_1.len() as f64);
    assert_eq!(
        total(
            &metrics,
            "iot_dead_letters_total",
            &["reason=\"not_parseable\""]
        ),
        2.0
    );
    assert_eq!(total(&metrics, "iot_dead_letters_total", &[]), 2.0);
    assert_eq!(
        total(&metrics, "iot_readings_total", &["outcome=\"on_time\""]),
        2.0 * STEPS as f64,
        "every good reading was on time"
    );
    assert_eq!(
        total(
            &metrics,
            "iot_readings_total",
            &["outcome=\"late_rejected\""]
        ),
        0.0
    );
    assert!(total(&metrics, "iot_plugin_calls_total", &["call=\"fold\""]) > 0.0);
    assert!(total(&metrics, "iot_plugin_fuel_total", &[]) > 0.0);
    assert!(total(&metrics, "iot_plugin_memory_bytes", &[]) > 0.0);
    assert_eq!(total(&metrics, "iot_plugin_failures_total", &[]), 0.0);
    assert!(total(&metrics, "iot_batch_records_count", &[]) >= 1.0);
    assert_eq!(
        partitions_at(&metrics, "iot_partition_owned", 1.0),
        vec![0, 1],
        "the only host of its group holds both partitions"
    );

    // What the host says it published is what a reader finds on the topics.
    let dead = read_all(bootstrap, &topics.dead_letter).len() as f64;
    assert_eq!(dead, 2.0);
    let aggregates_on_topic = read_all(bootstrap, &topics.aggregates).len() as f64;
    assert!(
        aggregates_on_topic > 0.0,
        "day 1 closed: its aggregates are published"
    );
    assert_eq!(
        total(
            &metrics,
            "iot_records_published_total",
            &["topic=\"aggregates\""]
        ),
        aggregates_on_topic
    );

    // Every metric the Grafana dashboard "IoT host" queries is one the host exposes.
    let families: BTreeSet<String> = scrape_text(&base)
        .expect("a scrape")
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next().map(str::to_owned))
        .collect();
    let dashboard = std::fs::read_to_string(repo_root().join(DASHBOARD)).unwrap();
    let referenced: BTreeSet<&str> = regex::Regex::new(r"iot_[a-z_]+")
        .unwrap()
        .find_iter(&dashboard)
        .map(|m| m.as_str())
        .collect();
    assert!(referenced.len() >= 10, "{referenced:?}");
    for name in referenced {
        let family = ["_total", "_bucket", "_count", "_sum"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        assert!(
            families.contains(family),
            "{DASHBOARD} queries {name}, which /metrics does not expose: {families:?}"
        );
    }

    // A real Prometheus scraping the host answers every panel's query with data.
    let prometheus = Prometheus::start(&scope.id, std::slice::from_ref(&addr));
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() >= 15, "{queries:?}");
    let deadline = Instant::now() + TIMEOUT;
    loop {
        host.assert_running();
        let empty: Vec<(String, String)> = queries
            .iter()
            .filter_map(|(title, expr)| match prometheus.query(expr) {
                Ok(series) if !series.is_empty() => None,
                Ok(_) => Some((title.clone(), format!("{expr}: no series"))),
                Err(e) => panic!("{DASHBOARD}, panel {title:?}: Prometheus refuses the query: {e}"),
            })
            .collect();
        if empty.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "panels of {DASHBOARD} without data after {TIMEOUT:?} of scraping: {empty:#?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    host.stop().await;
}

/// Every (panel title, PromQL expression) of a Grafana dashboard.
fn dashboard_queries(dashboard: &str) -> Vec<(String, String)> {
    let dashboard: serde_json::Value = serde_json::from_str(dashboard).unwrap();
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                queries.push((
                    panel["title"].as_str().unwrap_or("").to_owned(),
                    expr.to_owned(),
                ));
            }
        }
    }
    queries
}
