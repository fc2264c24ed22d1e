//! `iot-host tap`, as an operator runs it: after a host stored two sites' days, tapping the
//! aggregates topic for one site shows exactly that site's records, each once, read by the
//! tap's own consumer (no group offsets moved).

use std::process::Command;

use system_tests::fixture::{host_binary, TestScope};
use system_tests::harness::{produce, run_host_until_caught_up, SystemTopics};
use system_tests::topic::read_all;

/// 2021-06-01T00:00:00Z: the day the readings cover.
const DAY_START_MS: i64 = 1_622_505_600_000;
const STEP_MS: i64 = 15 * 60_000;
/// A day of 15-minute steps and the first step of the next day (it closes the day).
const STEPS: i64 = 97;

fn readings(site: &str) -> Vec<String> {
    (1..=STEPS)
        .map(|k| {
            let ts = chrono::DateTime::from_timestamp_millis(DAY_START_MS + k * STEP_MS)
                .unwrap()
                .format("%Y-%m-%dT%H:%M:%SZ");
            format!(r#"{{"site":"{site}","sensor":"HVAC1","ts":"{ts}","value":{k}}}"#)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tapping_one_site_shows_exactly_its_aggregates() {
    let mut scope = TestScope::new("tap_command");
    let topics = SystemTopics::create(&mut scope, 1).await;
    let (north, south) = (format!("{}-north", scope.id), format!("{}-south", scope.id));
    for site in [&north, &south] {
        produce(
            &scope.services.kafka_bootstrap,
            &topics.readings,
            0,
            site,
            &readings(site),
        )
        .await;
    }
    run_host_until_caught_up(&scope, &topics, 500).await;

    // The oracle: the aggregates topic read by an independent reader, filtered by site.
    let expected: Vec<String> = read_all(&scope.services.kafka_bootstrap, &topics.aggregates)
        .iter()
        .filter(|r| r.json()["site"] == north.as_str())
        .map(|r| format!("{}:{}", r.partition, r.offset))
        .collect();
    assert!(
        !expected.is_empty(),
        "the host emitted aggregates for {north}"
    );

    let output = Command::new(host_binary())
        .args(["tap", "--kafka", &scope.services.kafka_bootstrap])
        .args(["--topic", &topics.aggregates, "--site", &north])
        .args(["--from-start", "--exit-at-end"])
        .output()
        .expect("the host binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let shown: Vec<String> = stdout
        .lines()
        .map(|line| line.split(' ').nth(1).unwrap_or_default().to_owned())
        .collect();
    assert_eq!(shown, expected, "{stdout}");
    assert!(
        stdout
            .lines()
            .all(|l| l.contains(&north) && !l.contains(&south)),
        "{stdout}"
    );
}
