//! Alarm rules end to end: the three shipped rules (`host/pipelines/alarms.toml`) run as
//! outputs of kind `Alarm` beside the reference pipeline in the real host binary, over a
//! simulated fleet plus late readings of our own; every alarm in RedisTimeSeries and on
//! the `alarms` topic equals what the alarm oracle computes from the readings sent, and
//! every other series still equals the reference oracle.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use iot_simulator::{publish, PublishConfig, SimConfig};
use system_tests::alarm_oracle::{self, hh_mm, ExpectedAlarms};
use system_tests::fixture::{plugin_dir, TestScope};
use system_tests::harness::{produce, SystemTopics};
use system_tests::live_host::{HostFiles, LiveHost};
use system_tests::oracle::{self, SentReading, DAY_MS};
use system_tests::progress::Progress;
use system_tests::redis_read;
use system_tests::topic::read_all;

/// 2020-01-01T00:00:00Z, the simulated run's step 0 (day 0 starts here).
const RUN_START_MS: i64 = 1_577_836_800_000;
const SITES: u32 = 2;
const DAYS: u32 = 6;
const PARTITIONS: i32 = 3;
/// Generous: a debug host on a busy two-core machine drains this in seconds.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(600);

/// The instant `hh:mm` UTC of simulated day `day`.
fn at(day: i64, hh: i64, mm: i64) -> i64 {
    RUN_START_MS + day * DAY_MS + hh_mm(hh, mm)
}

fn reading(site: &str, sensor: &str, ts_ms: i64, value: f64) -> String {
    let ts = chrono::DateTime::from_timestamp_millis(ts_ms)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%SZ");
    format!(r#"{{"site":"{site}","sensor":"{sensor}","ts":"{ts}","value":{value}}}"#)
}

/// Readings sent after the simulated days (the site's clock is then at the end of day
/// `DAYS - 1`): motion two days back at 01:30 UTC (02:30 local: night) and two TH1
/// readings far out of the band on the same day, all within the allowed lateness; and
/// motion at night five days back, beyond it (rejected: no alarm).
fn late_readings(site: &str) -> Vec<String> {
    let recent = DAYS as i64 - 2;
    vec![
        reading(site, "Mov1", at(recent, 1, 30), 1.0),
        reading(site, "TH1", at(recent, 10, 7), 40.5),
        reading(site, "TH1", at(recent, 10, 8), 41.0),
        reading(site, "Mov1", at(DAYS as i64 - 5, 1, 40), 1.0),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_alarm_rules_raise_exactly_the_alarms_the_oracle_computes_late_readings_included() {
    let mut scope = TestScope::new("alarm_rules");
    let topics = SystemTopics::create(&mut scope, PARTITIONS).await;
    let bootstrap = scope.services.kafka_bootstrap.clone();
    let fleet = SimConfig {
        sites: SITES,
        seed: 11,
        start_ms: RUN_START_MS,
        days: Some(DAYS),
        site_prefix: format!("{}-s", scope.id),
    };
    let report = publish(
        PublishConfig::fast(&bootstrap, &topics.readings, fleet),
        Arc::new(AtomicBool::new(false)),
    )
    .await
    .expect("the simulator ran");
    assert!(report.failure.is_none(), "{:?}", report.failure);

    // The late readings go to the partition that holds the site's other readings.
    let simulated = read_all(&bootstrap, &topics.readings);
    let first = simulated.first().expect("the simulator sent readings");
    let site = first.key.clone().expect("readings are keyed by site");
    produce(
        &bootstrap,
        &topics.readings,
        first.partition,
        &site,
        &late_readings(&site),
    )
    .await;
    let sent: Vec<SentReading> = read_all(&bootstrap, &topics.readings)
        .iter()
        .map(|r| oracle::sent_reading(r).expect("a JSON reading"))
        .collect();

    let files = HostFiles::reference(&scope);
    for rule in ["motion-at-night", "motion-low-energy", "out-of-band"] {
        files.deploy(rule, &plugin_dir().join(format!("{rule}.wasm")));
    }
    files.write_pipeline(&alarm_oracle::reference_with_shipped_alarms());
    let log = std::env::temp_dir().join(format!("{}-host.log", scope.id));
    let (plugins, pipeline_file) = (files.plugins(), files.pipeline());
    let mut host = LiveHost::start(
        &scope,
        &topics,
        &log,
        &[
            "--plugins",
            plugins.to_str().unwrap(),
            "--pipeline",
            pipeline_file.to_str().unwrap(),
        ],
    );
    Progress::new(&scope, &topics.readings, PARTITIONS)
        .wait_until(
            &mut host,
            None,
            sent.len() as i64,
            DRAIN_TIMEOUT,
            "every reading sent",
        )
        .await;
    host.stop().await;
    let _ = std::fs::remove_file(&log);

    let expected = alarm_oracle::shipped_alarms(&sent);
    let per_rule = alarm_oracle::per_rule(&expected);
    println!("alarms the oracle expects, by rule: {per_rule:?}");
    for rule in ["NightMotion", "LowEnergyMotion", "TH1Band", "TH2Band"] {
        assert!(
            per_rule.get(rule).is_some_and(|&n| n > 0),
            "the readings must make {rule} raise alarms for the test to mean something: {per_rule:?}"
        );
    }
    let late_night = (site.clone(), "NightMotion".to_owned());
    assert!(
        expected[&late_night].contains_key(&at(DAYS as i64 - 2, 1, 30)),
        "the accepted late motion at night raises an alarm"
    );
    assert!(
        !expected[&late_night].contains_key(&at(DAYS as i64 - 5, 1, 40)),
        "the rejected late motion raises none"
    );

    // RedisTimeSeries: the Alarm series, exactly; everything else, as the reference oracle.
    let mut conn = scope.redis_conn().await;
    let stored = redis_read::all_series(&mut conn, &scope.key_prefix()).await;
    let stored_alarms: ExpectedAlarms = stored
        .iter()
        .filter(|((_, _, kind), _)| kind == "Alarm")
        .map(|((site, rule, _), values)| ((site.clone(), rule.clone()), values.clone()))
        .collect();
    assert_eq!(
        stored_alarms,
        expected,
        "the Alarm series hold exactly the oracle's alarms ({} expected)",
        alarm_oracle::count(&expected)
    );
    let reference = oracle::expected(&sent);
    let others: BTreeMap<_, _> = stored
        .into_iter()
        .filter(|((_, _, kind), _)| kind != "Alarm")
        .collect();
    assert_eq!(
        others, reference.series,
        "every other series equals the reference oracle"
    );

    // The alarms topic: one record per alarm, with its rule, value and evidence.
    let mut published = ExpectedAlarms::new();
    for record in read_all(&bootstrap, &topics.alarms) {
        let alarm = record.json();
        let evidence = alarm["evidence"].as_str().unwrap_or_default();
        assert!(!evidence.is_empty(), "an alarm says why: {alarm}");
        assert_eq!(alarm["kind"], "Alarm", "{alarm}");
        published
            .entry((
                alarm["site"].as_str().unwrap().to_owned(),
                alarm["rule"].as_str().unwrap().to_owned(),
            ))
            .or_default()
            .insert(
                alarm["ts_ms"].as_i64().unwrap(),
                alarm["value"].as_f64().unwrap(),
            );
    }
    assert_eq!(
        published, expected,
        "the alarms topic holds the oracle's alarms"
    );
}
