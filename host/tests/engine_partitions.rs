//! A site whose readings arrive on two partitions (a producer that does not key by site):
//! the engine keeps one event-time clock per site, so a second partition's readings would
//! advance or lag it at random. They are dead-lettered as `split-site` instead, never
//! folded; the site's own partition stays exact. Runs the engine alone (no services).

use std::collections::HashMap;

use crate::common::{hvac1_reading, hvac1_sum_engine};
use iot_host::engine::{Engine, EngineConfig, OutTopic, SourceRecord, SPLIT_SITE};

const HOUR_MS: i64 = 3_600_000;
/// 2020-01-01T00:00:00Z.
const JAN_1: i64 = 1_577_836_800_000;
const SITE: &str = "s1";
const HOME_PARTITION: i32 = 0;
const OTHER_PARTITION: i32 = 3;

fn reading(partition: i32, offset: i64, ts_ms: i64, value: f64) -> SourceRecord {
    hvac1_reading(partition, offset, SITE, ts_ms, value)
}

fn engine() -> Engine {
    let mut engine = hvac1_sum_engine(EngineConfig::default());
    for p in [HOME_PARTITION, OTHER_PARTITION] {
        engine.restore_partition(p, None, &HashMap::new()).unwrap();
    }
    engine
}

#[test]
fn readings_of_a_site_on_a_second_partition_are_dead_lettered_not_folded() {
    let mut engine = engine();
    // Day 1 on the site's own partition: 1 + 2; then the other partition sends a reading
    // of day 1 (3) and one of day 3 (which would have closed days 1 and 2); then day 2
    // on the own partition closes day 1.
    engine.process(&reading(HOME_PARTITION, 0, JAN_1 + HOUR_MS, 1.0));
    engine.process(&reading(HOME_PARTITION, 1, JAN_1 + 2 * HOUR_MS, 2.0));
    engine.process(&reading(OTHER_PARTITION, 0, JAN_1 + 3 * HOUR_MS, 3.0));
    engine.process(&reading(OTHER_PARTITION, 1, JAN_1 + 50 * HOUR_MS, 4.0));
    engine.process(&reading(HOME_PARTITION, 2, JAN_1 + 25 * HOUR_MS, 5.0));
    let effects = engine.finish_batch();

    let dead: Vec<serde_json::Value> = effects
        .records
        .iter()
        .filter(|r| r.topic == OutTopic::DeadLetter)
        .map(|r| serde_json::from_str(&r.value).unwrap())
        .collect();
    assert_eq!(
        dead.len(),
        2,
        "both readings of the other partition: {dead:?}"
    );
    for d in &dead {
        assert_eq!(d["reason"], SPLIT_SITE);
        assert_eq!(d["partition"], OTHER_PARTITION);
        let detail = d["detail"].as_str().unwrap();
        assert!(
            detail.contains("partition 0") && detail.contains("partition 3"),
            "{detail}"
        );
    }
    assert_eq!(engine.stats().dead_letters.get(SPLIT_SITE), Some(&2));

    // Day 1 is the sum of the own partition's readings alone, emitted when day 2 began.
    let day_1_key = "iot:s1:HVAC1:AggDay";
    let day_1: Vec<f64> = effects
        .samples
        .iter()
        .filter(|s| {
            effects
                .new_series
                .iter()
                .any(|d| d.id == s.series && d.key == day_1_key)
        })
        .map(|s| s.value)
        .collect();
    assert_eq!(
        day_1,
        vec![3.0],
        "day 1 = 1 + 2, and nothing else was emitted"
    );
}
