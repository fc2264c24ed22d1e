//! Focused cases of the late-data policy (SPEC §3), each on real Kafka and Redis with the
//! real plugins. Expected values are computed here from the readings the test sends.

use system_tests::fixture::TestScope;
use system_tests::harness::{produce, run_host_until_caught_up, SystemTopics};
use system_tests::redis_read;

const MINUTE_MS: i64 = 60_000;
const STEP_MS: i64 = 15 * MINUTE_MS;
const DAY_MS: i64 = 24 * 60 * MINUTE_MS;
/// 2021-06-01T00:00:00Z: day D of these tests starts here.
const DAY_D: i64 = 1_622_505_600_000;
const DAY_D_END: i64 = DAY_D + DAY_MS;

/// The instant `hh:mm` of day `D + day`.
fn at(day: i64, hh: i64, mm: i64) -> i64 {
    DAY_D + day * DAY_MS + hh * 60 * MINUTE_MS + mm * MINUTE_MS
}

fn reading(site: &str, sensor: &str, ts_ms: i64, value: f64) -> String {
    let ts = chrono::DateTime::from_timestamp_millis(ts_ms)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%SZ");
    format!(r#"{{"site":"{site}","sensor":"{sensor}","ts":"{ts}","value":{value}}}"#)
}

/// The 96 interval-end stamps of day `D + day`: 00:15 … next 00:00.
fn steps_of_day(day: i64) -> impl Iterator<Item = i64> {
    (1..=96).map(move |k| DAY_D + day * DAY_MS + k * STEP_MS)
}

struct Case {
    scope: TestScope,
    topics: SystemTopics,
    site: String,
}

impl Case {
    async fn new(name: &str) -> Case {
        let mut scope = TestScope::new(name);
        let topics = SystemTopics::create(&mut scope, 1).await;
        let site = format!("{}-a", scope.id);
        Case {
            scope,
            topics,
            site,
        }
    }

    async fn send(&self, key: &str, payloads: &[String]) {
        produce(
            &self.scope.services.kafka_bootstrap,
            &self.topics.readings,
            0,
            key,
            payloads,
        )
        .await;
    }

    async fn run_host(&self) -> iot_host::engine::Stats {
        run_host_until_caught_up(&self.scope, &self.topics, 500).await
    }

    async fn series(&self, site: &str, sensor: &str, kind: &str) -> Vec<(i64, f64)> {
        let mut conn = self.scope.redis_conn().await;
        let key = format!("{}{site}:{sensor}:{kind}", self.scope.key_prefix());
        let exists: bool = redis::cmd("EXISTS")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        if !exists {
            return Vec::new();
        }
        redis_read::range(&mut conn, &key)
            .await
            .into_iter()
            .collect()
    }
}

fn sum(values: &[f64]) -> f64 {
    values.iter().fold(0.0, |acc, v| acc + v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_reading_stamped_at_midnight_updates_the_day_before() {
    let case = Case::new("late_reading_at_midnight").await;
    let site = case.site.clone();
    let mut on_time: Vec<f64> = Vec::new();
    let mut payloads = Vec::new();
    for (i, ts) in steps_of_day(0).chain(steps_of_day(1)).enumerate() {
        let value = 0.25 + (i % 4) as f64 * 0.25;
        if ts <= DAY_D_END {
            on_time.push(value);
        }
        payloads.push(reading(&site, "W1", ts, value));
    }
    case.send(&site, &payloads).await;
    case.run_host().await;
    assert_eq!(
        case.series(&site, "W1", "AggDay").await.first(),
        Some(&(DAY_D_END, sum(&on_time)))
    );

    // Late, stamped exactly at D+1 00:00: it closes day D, not D+1.
    const LATE_VALUE: f64 = 0.75;
    case.send(&site, &[reading(&site, "W1", DAY_D_END, LATE_VALUE)])
        .await;
    let stats = case.run_host().await;
    assert_eq!(stats.late_accepted, 1);
    let mut with_late = on_time.clone();
    with_late.push(LATE_VALUE);
    let agg = case.series(&site, "W1", "AggDay").await;
    assert_eq!(agg.first(), Some(&(DAY_D_END, sum(&with_late))));
    assert_eq!(
        case.series(&site, "W1", "LateAccepted").await,
        vec![(DAY_D_END, LATE_VALUE)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_reading_that_changes_a_leak_value_re_emits_the_rest() {
    let case = Case::new("late_reading_changes_leak").await;
    let site = case.site.clone();
    const WTOT_START: f64 = 1000.0;
    const WTOT_END: f64 = 1110.5;
    let mut w1 = Vec::new();
    let mut payloads = vec![reading(&site, "Wtot", DAY_D, WTOT_START)];
    for (i, ts) in steps_of_day(0).enumerate() {
        let value = (i % 5) as f64 * 0.2;
        w1.push(value);
        payloads.push(reading(&site, "W1", ts, value));
    }
    payloads.push(reading(&site, "Wtot", DAY_D_END, WTOT_END));
    payloads.push(reading(&site, "W1", at(1, 0, 15), 0.5)); // closes day D
    case.send(&site, &payloads).await;
    case.run_host().await;
    let diff = WTOT_END - WTOT_START;
    assert_eq!(
        case.series(&site, "Wtot", "AggDayDiff").await,
        vec![(DAY_D_END, diff)]
    );
    assert_eq!(
        case.series(&site, "Wtot", "AggDayRest").await,
        vec![(DAY_D_END, diff - sum(&w1))]
    );

    const LEAK_FIX: f64 = 0.95;
    case.send(&site, &[reading(&site, "W1", at(0, 13, 0), LEAK_FIX)])
        .await;
    case.run_host().await;
    w1.push(LEAK_FIX);
    assert_eq!(
        case.series(&site, "W1", "AggDay").await,
        vec![(DAY_D_END, sum(&w1))]
    );
    assert_eq!(
        case.series(&site, "Wtot", "AggDayRest").await,
        vec![(DAY_D_END, diff - sum(&w1))]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reading_one_step_beyond_the_allowed_lateness_is_rejected_and_the_last_allowed_one_is_not(
) {
    let case = Case::new("one_step_beyond_lateness").await;
    let site = case.site.clone();
    const FIRST: f64 = 10.0;
    // Day D has one HVAC1 reading; the site's clock then moves to D_END + 2 days exactly.
    let mut payloads = vec![
        reading(&site, "HVAC1", at(0, 12, 0), FIRST),
        reading(&site, "HVAC1", DAY_D_END + 2 * DAY_MS, 1.0),
    ];
    // Exactly at the allowed lateness: accepted into day D.
    const ALLOWED: f64 = 20.0;
    payloads.push(reading(&site, "HVAC1", at(0, 12, 15), ALLOWED));
    // One step more on the clock: day D is beyond the allowed lateness now.
    payloads.push(reading(
        &site,
        "HVAC1",
        DAY_D_END + 2 * DAY_MS + STEP_MS,
        1.0,
    ));
    const TOO_LATE: f64 = 40.0;
    payloads.push(reading(&site, "HVAC1", at(0, 12, 30), TOO_LATE));
    case.send(&site, &payloads).await;
    let stats = case.run_host().await;
    assert_eq!((stats.late_accepted, stats.late_rejected), (1, 1));
    assert_eq!(
        case.series(&site, "HVAC1", "AggDay").await.first(),
        Some(&(DAY_D_END, FIRST + ALLOWED))
    );
    assert_eq!(
        case.series(&site, "HVAC1", "LateRej").await,
        vec![(at(0, 12, 30), TOO_LATE)]
    );
    assert_eq!(
        case.series(&site, "HVAC1", "LateAccepted").await,
        vec![(at(0, 12, 15), ALLOWED)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn motion_events_out_of_order_within_a_day_are_all_counted_on_time() {
    let case = Case::new("motion_out_of_order").await;
    let site = case.site.clone();
    let events = [
        at(0, 10, 7),
        at(0, 8, 1),
        at(0, 23, 59),
        at(0, 0, 0) + 1000,
        at(0, 12, 30),
    ];
    let mut payloads: Vec<String> = events
        .iter()
        .map(|&ts| reading(&site, "Mov1", ts, 1.0))
        .collect();
    payloads.push(reading(&site, "Mov1", at(1, 9, 0), 1.0)); // closes day D
    case.send(&site, &payloads).await;
    let stats = case.run_host().await;
    assert_eq!(
        stats.late_accepted + stats.late_rejected,
        0,
        "out of order within an open day is on time"
    );
    assert_eq!(
        case.series(&site, "Mov1", "AggDay").await,
        vec![(DAY_D_END, events.len() as f64)]
    );
    let mut sorted = events.to_vec();
    sorted.sort_unstable();
    let raw: Vec<i64> = case
        .series(&site, "Mov1", "raw")
        .await
        .into_iter()
        .map(|(ts, _)| ts)
        .collect();
    assert_eq!(raw, [sorted, vec![at(1, 9, 0)]].concat());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sites_in_one_partition_keep_their_own_clocks_and_windows() {
    let case = Case::new("two_sites_one_partition").await;
    let ahead = case.site.clone();
    let behind = format!("{}-b", case.scope.id);
    // Site `ahead` is five days further on; `behind` still sends day D on time.
    let mut payloads = vec![reading(&ahead, "HVAC1", at(5, 0, 15), 7.0)];
    let mut behind_values = Vec::new();
    for (i, ts) in steps_of_day(0).enumerate() {
        let value = i as f64;
        behind_values.push(value);
        payloads.push(reading(&behind, "HVAC1", ts, value));
        if i == 10 {
            payloads.push(reading(&ahead, "HVAC1", at(5, 0, 30), 8.0));
        }
    }
    payloads.push(reading(&behind, "HVAC1", at(1, 0, 15), 1.0));
    // Both sites share the partition (and the key decides nothing here).
    case.send("shared", &payloads).await;
    let stats = case.run_host().await;
    assert_eq!(stats.late_accepted + stats.late_rejected, 0);
    assert_eq!(
        case.series(&behind, "HVAC1", "AggDay").await,
        vec![(DAY_D_END, sum(&behind_values))]
    );
    assert_eq!(
        case.series(&ahead, "HVAC1", "AggDay").await,
        Vec::<(i64, f64)>::new(),
        "ahead's day is still open"
    );
    assert_eq!(case.series(&behind, "HVAC1", "raw").await.len(), 97);
}
