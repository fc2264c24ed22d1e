//! `--stamps interval-start` in the engine alone (no services): day D holds the readings
//! stamped D 00:00 … D 23:45 and its output is stored at D 00:00; a checkpoint filed under
//! one convention is refused by a host running the other.

use std::collections::HashMap;

use crate::common::hvac1_sum_engine;
use iot_host::engine::{Effects, Engine, EngineConfig, OutTopic, SourceRecord};
use iot_protocol::time::StampConvention;

const MINUTE_MS: i64 = 60_000;
const STEP_MS: i64 = 15 * MINUTE_MS;
const DAY_MS: i64 = 24 * 60 * MINUTE_MS;
/// 2020-01-01T00:00:00Z.
const JAN_1: i64 = 1_577_836_800_000;
const PARTITION: i32 = 0;
const AGG_DAY_KEY: &str = "iot:s1:HVAC1:AggDay";

fn line(offset: i64, ts_ms: i64, value: f64) -> SourceRecord {
    let ts = chrono::DateTime::from_timestamp_millis(ts_ms)
        .unwrap()
        .format("%Y-%m-%d %H:%M:%S");
    SourceRecord {
        partition: PARTITION,
        offset,
        key: None,
        payload: format!("HVAC1 {ts} {value}").into_bytes(),
    }
}

fn engine(stamps: StampConvention) -> Engine {
    hvac1_sum_engine(EngineConfig {
        default_site: "s1".into(),
        stamps,
        ..EngineConfig::default()
    })
}

/// (timestamp, value) of every AggDay the batch emitted (its `aggregates` records).
fn stored_agg_day(effects: &Effects) -> Vec<(i64, f64)> {
    effects
        .records
        .iter()
        .filter(|r| r.topic == OutTopic::Aggregates)
        .filter(|r| r.key.as_deref().is_some_and(|k| k.starts_with(AGG_DAY_KEY)))
        .map(|r| {
            let v: serde_json::Value = serde_json::from_str(&r.value).unwrap();
            (v["ts_ms"].as_i64().unwrap(), v["value"].as_f64().unwrap())
        })
        .collect()
}

#[test]
fn interval_start_day_runs_from_its_midnight_to_its_last_step_and_is_stored_at_its_start() {
    let mut engine = engine(StampConvention::IntervalStart);
    engine
        .restore_partition(PARTITION, None, &HashMap::new())
        .unwrap();
    engine.process(&line(0, JAN_1, 1.0)); // the first interval of Jan 1
    engine.process(&line(1, JAN_1 + DAY_MS - STEP_MS, 2.0)); // its last
    engine.process(&line(2, JAN_1 + DAY_MS, 4.0)); // Jan 2's first: closes Jan 1
    let effects = engine.finish_batch();
    assert_eq!(stored_agg_day(&effects), vec![(JAN_1, 3.0)]);
    // The raw readings keep their own stamps.
    let raw: Vec<i64> = effects
        .samples
        .iter()
        .filter(|s| {
            effects
                .new_series
                .iter()
                .any(|d| d.id == s.series && d.key == "iot:s1:HVAC1:raw")
        })
        .map(|s| s.ts_ms)
        .collect();
    assert_eq!(raw, vec![JAN_1, JAN_1 + DAY_MS - STEP_MS, JAN_1 + DAY_MS]);
}

#[test]
fn the_same_lines_under_interval_end_make_other_days() {
    let mut engine = engine(StampConvention::IntervalEnd);
    engine
        .restore_partition(PARTITION, None, &HashMap::new())
        .unwrap();
    engine.process(&line(0, JAN_1, 1.0)); // closes Dec 31
    engine.process(&line(1, JAN_1 + DAY_MS - STEP_MS, 2.0));
    engine.process(&line(2, JAN_1 + DAY_MS, 4.0)); // Jan 1's last
    let effects = engine.finish_batch();
    // Jan 1 00:00 is the last reading of Dec 31 here, stored at the end of that day.
    assert_eq!(stored_agg_day(&effects), vec![(JAN_1, 1.0)]);
    engine.process(&line(3, JAN_1 + DAY_MS + STEP_MS, 8.0));
    let effects = engine.finish_batch();
    assert_eq!(stored_agg_day(&effects), vec![(JAN_1 + DAY_MS, 6.0)]);
}

#[test]
fn a_checkpoint_filed_under_interval_start_is_refused_by_an_interval_end_host() {
    let mut start = engine(StampConvention::IntervalStart);
    start
        .restore_partition(PARTITION, None, &HashMap::new())
        .unwrap();
    start.process(&line(0, JAN_1, 1.0));
    start.finish_batch();
    let checkpoint = start.partition_checkpoint(PARTITION);
    assert_eq!(checkpoint.stamps.as_deref(), Some("interval-start"));

    let mut end = engine(StampConvention::IntervalEnd);
    let error = end
        .restore_partition(PARTITION, Some(checkpoint), &HashMap::new())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("--stamps interval-start"),
        "the error says which convention to run with: {error}"
    );
}
