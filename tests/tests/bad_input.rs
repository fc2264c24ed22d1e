//! Bad records of every kind in SPEC §8 land in `dead-letter` with their reason, and the
//! good readings around them are all stored.

use system_tests::fixture::TestScope;
use system_tests::harness::{produce, run_host_until_caught_up, SystemTopics};
use system_tests::redis_read;
use system_tests::topic::read_all;

const STEP_MS: i64 = 15 * 60_000;
/// 2020-03-01T00:00:00Z.
const MARCH_1_MS: i64 = 1_583_020_800_000;

fn iso(ts_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ts_ms)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn json_reading(site: &str, sensor: &str, step: i64, value: f64) -> String {
    format!(
        r#"{{"site":"{site}","sensor":"{sensor}","ts":"{}","value":{value}}}"#,
        iso(MARCH_1_MS + step * STEP_MS)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_records_go_to_dead_letter_with_their_reason_and_good_ones_around_them_are_stored() {
    let mut scope = TestScope::new("bad_records_go_to_dead_letter");
    let topics = SystemTopics::create(&mut scope, 1).await;
    let site = format!("{}-site", scope.id);
    let default_site = format!("{}-default", scope.id);
    let too_big = format!(
        r#"{{"site":"{site}","sensor":"TH1","ts":"{}","value":1,"pad":"{}"}}"#,
        iso(MARCH_1_MS),
        "x".repeat(2000)
    );
    let bad: Vec<(&str, String)> = vec![
        ("not_parseable", "this is not a reading".to_owned()),
        ("not_parseable", "{\"site\": broken json".to_owned()),
        (
            "missing_field",
            format!(r#"{{"site":"{site}","sensor":"TH1","value":1.5}}"#),
        ),
        (
            "unknown_sensor",
            format!(
                r#"{{"site":"{site}","sensor":"TH9","ts":"{}","value":1.5}}"#,
                iso(MARCH_1_MS + STEP_MS)
            ),
        ),
        ("non_finite_value", "TH1 2020-03-01 00:15:00 NaN".to_owned()),
        (
            "non_finite_value",
            format!(
                r#"{{"site":"{site}","sensor":"TH1","ts":"{}","value":1e400}}"#,
                iso(MARCH_1_MS + STEP_MS)
            ),
        ),
        (
            "bad_timestamp",
            format!(r#"{{"site":"{site}","sensor":"TH1","ts":"the day after","value":1.5}}"#),
        ),
        ("bad_timestamp", "TH1 2020-02-30 00:15:00 3.5".to_owned()),
        ("oversized", too_big),
    ];
    // Good readings before, between and after every bad record.
    let mut payloads = Vec::new();
    let mut good = Vec::new();
    for (i, (_, bad_payload)) in bad.iter().enumerate() {
        let value = 12.0 + i as f64;
        payloads.push(json_reading(&site, "TH1", i as i64 + 1, value));
        good.push((MARCH_1_MS + (i as i64 + 1) * STEP_MS, value));
        payloads.push(bad_payload.clone());
    }
    let last_step = bad.len() as i64 + 1;
    payloads.push(json_reading(&site, "TH1", last_step, 30.25));
    good.push((MARCH_1_MS + last_step * STEP_MS, 30.25));
    // A good record in the line format is stored under the host's default site.
    payloads.push("HVAC1 2020-03-01 00:15:00 42.5".to_owned());
    produce(
        &scope.services.kafka_bootstrap,
        &topics.readings,
        0,
        &site,
        &payloads,
    )
    .await;

    let stats = run_host_until_caught_up(&scope, &topics, 100).await;
    assert_eq!(stats.dead_letter_total(), bad.len() as u64);
    assert_eq!(stats.records, payloads.len() as u64);

    let dead = read_all(&scope.services.kafka_bootstrap, &topics.dead_letter);
    let reasons: Vec<String> = dead
        .iter()
        .map(|r| r.json()["reason"].as_str().unwrap().to_owned())
        .collect();
    let expected_reasons: Vec<&str> = bad.iter().map(|(reason, _)| *reason).collect();
    assert_eq!(reasons, expected_reasons);
    for (record, (_, payload)) in dead.iter().zip(&bad) {
        let v = record.json();
        assert!(
            !v["detail"].as_str().unwrap().is_empty(),
            "every dead letter says why"
        );
        assert_eq!(v["topic"].as_str(), Some(topics.readings.as_str()));
        let echoed = v["payload"].as_str().unwrap();
        assert!(
            payload.starts_with(echoed),
            "the dead letter carries the original payload"
        );
        assert_eq!(
            record.key.as_deref(),
            Some(site.as_str()),
            "the dead letter keeps the original key"
        );
    }

    let mut conn = scope.redis_conn().await;
    let th1 = redis_read::range(&mut conn, &format!("{}{site}:TH1:raw", scope.key_prefix())).await;
    assert_eq!(th1.into_iter().collect::<Vec<_>>(), good);
    let hvac1 = redis_read::range(
        &mut conn,
        &format!("{}{default_site}:HVAC1:raw", scope.key_prefix()),
    )
    .await;
    assert_eq!(
        hvac1.into_iter().collect::<Vec<_>>(),
        vec![(MARCH_1_MS + STEP_MS, 42.5)]
    );
}
