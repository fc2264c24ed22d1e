//! A fast multi-site simulator run through real Kafka, the host and real RedisTimeSeries:
//! every stored series equals the oracle, computed from what the topic really holds. On one
//! Redis and on a 3-master Redis Cluster (the same test body).

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use iot_simulator::{publish, PublishConfig, SimConfig};
use system_tests::fixture::{Sink, TestScope};
use system_tests::harness::{run_host_until_caught_up, SystemTopics};
use system_tests::oracle::{self, SentReading};
use system_tests::redis_read;
use system_tests::topic::read_all;

/// 2020-01-01T00:00:00Z, the simulated run's step 0.
const RUN_START_MS: i64 = 1_577_836_800_000;
const SITES: u32 = 2;
const DAYS: u32 = 10;
const READINGS_PARTITIONS: i32 = 3;

fn simulated_fleet(scope: &TestScope) -> SimConfig {
    SimConfig {
        sites: SITES,
        seed: 7,
        start_ms: RUN_START_MS,
        days: Some(DAYS),
        site_prefix: format!("{}-s", scope.id),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stored_series_of_a_ten_day_two_site_run_equals_the_oracle() {
    ten_day_two_site_run_equals_the_oracle(Sink::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_redis_cluster_every_stored_series_of_a_ten_day_two_site_run_equals_the_oracle() {
    ten_day_two_site_run_equals_the_oracle(Sink::RedisCluster).await;
}

async fn ten_day_two_site_run_equals_the_oracle(sink: Sink) {
    let mut scope = TestScope::on("every_stored_series_equals_the_oracle", sink);
    let topics = SystemTopics::create(&mut scope, READINGS_PARTITIONS).await;
    let bootstrap = scope.services.kafka_bootstrap.clone();

    let report = publish(
        PublishConfig::fast(&bootstrap, &topics.readings, simulated_fleet(&scope)),
        Arc::new(AtomicBool::new(false)),
    )
    .await
    .expect("the simulator ran");
    assert!(
        report.failure.is_none(),
        "simulator failed: {:?}",
        report.failure
    );

    // What was sent, as the topic holds it, in each site's partition order.
    let sent_records = read_all(&bootstrap, &topics.readings);
    let sent: Vec<SentReading> = sent_records
        .iter()
        .map(|r| oracle::sent_reading(r).expect("a JSON reading"))
        .collect();
    assert_eq!(
        sent.len() as u64,
        report.acknowledged,
        "the topic holds every acknowledged reading"
    );

    let stats = run_host_until_caught_up(&scope, &topics, 2000).await;
    assert_eq!(stats.records, sent.len() as u64);
    assert_eq!(stats.dead_letter_total(), 0);

    let expected = oracle::expected(&sent);
    let mut conn = scope.redis_conn().await;
    let stored = redis_read::all_series(&mut conn, &scope.key_prefix()).await;

    // Raw, LateAccepted and LateRej together are the complete input.
    let input_kinds = ["raw", "LateAccepted", "LateRej"];
    let stored_inputs: usize = stored
        .iter()
        .filter(|((_, _, k), _)| input_kinds.contains(&k.as_str()))
        .map(|(_, v)| v.len())
        .sum();
    let distinct_sent: std::collections::BTreeSet<(String, String, i64, &str)> = expected
        .series
        .iter()
        .filter(|((_, _, k), _)| input_kinds.contains(&k.as_str()))
        .flat_map(|((site, sensor, kind), values)| {
            values
                .keys()
                .map(move |ts| (site.clone(), sensor.clone(), *ts, kind.as_str()))
        })
        .collect();
    assert_eq!(stored_inputs, distinct_sent.len());

    // Both kinds of late reading really happened in this run.
    assert!(
        expected.of_kind("LateAccepted").count() > 0,
        "the run has accepted late readings"
    );
    assert!(
        expected.of_kind("LateRej").count() > 0,
        "the run has rejected late readings"
    );
    for kind in ["AggDay", "AggDayDiff", "AggDayRest"] {
        assert!(
            expected.of_kind(kind).count() > 0,
            "the oracle expects {kind} series"
        );
    }

    let mismatches = compare(&expected.series, &stored);
    assert!(
        mismatches.is_empty(),
        "{} differences from the oracle, first ones:\n{}",
        mismatches.len(),
        mismatches
            .iter()
            .take(15)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );

    // Every series carries its labels and keeps the last value per timestamp.
    for ((site, sensor, kind), _) in expected.series.iter().take(40) {
        let key = scope.series_key(site, sensor, kind);
        assert_eq!(
            redis_read::duplicate_policy(&mut conn, &key).await,
            "last",
            "{key}"
        );
        let labels = redis_read::series_labels(&mut conn, &key).await;
        assert_eq!(
            labels.get("unit").map(String::is_empty),
            Some(false),
            "{key} has a unit"
        );
    }

    // The aggregates topic, read as an upsert log, ends with the stored values.
    let mut last_by_key: BTreeMap<String, f64> = BTreeMap::new();
    for record in read_all(&bootstrap, &topics.aggregates) {
        let v = record.json();
        last_by_key.insert(
            record.key.clone().expect("aggregates are keyed"),
            v["value"].as_f64().unwrap(),
        );
    }
    let mut expected_outputs = 0;
    for ((site, sensor, kind), values) in &expected.series {
        if input_kinds.contains(&kind.as_str()) {
            continue;
        }
        for (ts, value) in values {
            expected_outputs += 1;
            let key = format!("{}@{ts}", scope.series_key(site, sensor, kind));
            assert_eq!(
                last_by_key.get(&key),
                Some(value),
                "aggregates topic, {key}"
            );
        }
    }
    assert_eq!(
        last_by_key.len(),
        expected_outputs,
        "no extra keys on the aggregates topic"
    );

    // late-rejected holds exactly the LateRej readings.
    let rejected = read_all(&bootstrap, &topics.late_rejected);
    let expected_rejected: usize = expected.of_kind("LateRej").map(|(_, v)| v.len()).sum();
    assert_eq!(rejected.len(), expected_rejected);
}

fn compare(
    expected: &BTreeMap<(String, String, String), BTreeMap<i64, f64>>,
    stored: &BTreeMap<(String, String, String), BTreeMap<i64, f64>>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (series, values) in expected {
        match stored.get(series) {
            None => out.push(format!("missing series {series:?}")),
            Some(got) => {
                for (ts, value) in values {
                    match got.get(ts) {
                        Some(v) if v == value => {}
                        other => out.push(format!(
                            "{series:?} @ {ts}: expected {value}, stored {other:?}"
                        )),
                    }
                }
                for ts in got.keys().filter(|ts| !values.contains_key(ts)) {
                    out.push(format!("{series:?} @ {ts}: stored but not expected"));
                }
            }
        }
    }
    for series in stored.keys().filter(|s| !expected.contains_key(*s)) {
        out.push(format!("unexpected series {series:?}"));
    }
    out
}
