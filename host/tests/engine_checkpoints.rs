//! Checkpoints as the engine writes them (no services): a batch writes only the sites whose
//! state changed, the first write after a partition is placed replaces everything, and the
//! fields a store accumulates write after write read back as the engine's whole state. The
//! earlier JSON form is still read.

use std::collections::HashMap;

use crate::common::{hvac1_reading, hvac1_sum_engine};
use iot_host::engine::checkpoint_format::{self, CheckpointWrite, StoredFields};
use iot_host::engine::{Engine, EngineConfig, SourceRecord};

const MINUTE_MS: i64 = 60_000;
const STEP_MS: i64 = 15 * MINUTE_MS;
/// 2020-01-01T00:00:00Z.
const JAN_1: i64 = 1_577_836_800_000;
const PARTITION: i32 = 0;
const NORTH: &str = "north";
const SOUTH: &str = "south";

fn reading(offset: i64, site: &str, ts_ms: i64, value: f64) -> SourceRecord {
    hvac1_reading(PARTITION, offset, site, ts_ms, value)
}

/// The engine with the partition placed, empty.
fn engine() -> Engine {
    let mut engine = hvac1_sum_engine(EngineConfig::default());
    engine
        .restore_partition(PARTITION, None, &HashMap::new())
        .unwrap();
    engine
}

/// Runs one batch and returns the partition's checkpoint write.
fn batch(engine: &mut Engine, records: &[SourceRecord]) -> CheckpointWrite {
    for record in records {
        engine.process(record);
    }
    let mut effects = engine.finish_batch();
    assert_eq!(effects.checkpoints.len(), 1, "one partition moved");
    effects.checkpoints.remove(0)
}

fn sites(write: &CheckpointWrite) -> Vec<&str> {
    write.sites.iter().map(|(name, _)| name.as_str()).collect()
}

#[test]
fn a_batch_writes_only_the_sites_it_changed_after_a_first_write_of_everything() {
    let mut engine = engine();
    let first = batch(
        &mut engine,
        &[
            reading(0, NORTH, JAN_1 + STEP_MS, 1.0),
            reading(1, SOUTH, JAN_1 + STEP_MS, 2.0),
        ],
    );
    assert!(
        first.replace,
        "the first write after placing a partition replaces it"
    );
    assert_eq!(sites(&first), vec![NORTH, SOUTH]);

    let second = batch(&mut engine, &[reading(2, SOUTH, JAN_1 + 2 * STEP_MS, 3.0)]);
    assert!(!second.replace);
    assert_eq!(sites(&second), vec![SOUTH], "north did not change");
    assert_eq!(second.next_offset, 3);
    assert!(
        second.bytes() < first.bytes(),
        "a delta of one site is smaller than both sites"
    );
}

#[test]
fn the_fields_a_store_accumulates_read_back_as_the_engines_whole_state() {
    let mut engine = engine();
    let mut stored = StoredFields::default();
    let batches = [
        vec![
            reading(0, NORTH, JAN_1 + STEP_MS, 1.0),
            reading(1, SOUTH, JAN_1 + STEP_MS, 2.0),
        ],
        vec![reading(2, NORTH, JAN_1 + 2 * STEP_MS, 0.5)],
        vec![reading(3, SOUTH, JAN_1 + 3 * STEP_MS, 0.25)],
    ];
    for records in &batches {
        stored.apply(&batch(&mut engine, records));
        assert_eq!(
            stored.decode(PARTITION).unwrap(),
            Some(engine.partition_checkpoint(PARTITION)),
            "the deltas applied so far are the whole state"
        );
    }
}

#[test]
fn a_restart_from_accumulated_deltas_finishes_the_day_with_every_reading() {
    let mut engine = engine();
    let mut stored = StoredFields::default();
    stored.apply(&batch(
        &mut engine,
        &[
            reading(0, NORTH, JAN_1 + STEP_MS, 1.0),
            reading(1, SOUTH, JAN_1 + STEP_MS, 2.0),
        ],
    ));
    stored.apply(&batch(
        &mut engine,
        &[reading(2, NORTH, JAN_1 + 2 * STEP_MS, 0.5)],
    ));

    let mut restarted = self::engine();
    restarted.forget_partitions(&[PARTITION]);
    restarted
        .restore_partition(
            PARTITION,
            stored.decode(PARTITION).unwrap(),
            &HashMap::new(),
        )
        .unwrap();
    assert_eq!(
        restarted.partition_checkpoint(PARTITION),
        engine.partition_checkpoint(PARTITION),
        "the restarted engine holds what the first one held"
    );
    let write = batch(
        &mut restarted,
        &[reading(3, SOUTH, JAN_1 + 2 * STEP_MS, 4.0)],
    );
    assert!(
        write.replace,
        "the first write after a restore replaces the stored checkpoint"
    );
}

#[test]
fn a_checkpoint_in_the_earlier_json_form_is_still_read() {
    let mut engine = engine();
    batch(&mut engine, &[reading(0, NORTH, JAN_1 + STEP_MS, 1.5)]);
    let checkpoint = engine.partition_checkpoint(PARTITION);
    // What hosts before the binary form wrote: the same types as JSON, bytes in base64.
    let json = serde_json::to_vec(&checkpoint).unwrap();
    assert!(
        String::from_utf8_lossy(&json).contains("\"state\":\"AAAAAAAA+D8BAAAAAAAAAA==\""),
        "accumulators are base64 in JSON (1.5 and a count of 1)"
    );
    assert_eq!(
        checkpoint_format::decode_legacy_json(&json).unwrap(),
        checkpoint
    );
}

#[test]
fn the_binary_form_is_less_than_half_the_json_form() {
    let mut engine = engine();
    let mut records = Vec::new();
    for (k, site) in ["a", "b", "c", "d"].iter().enumerate() {
        for step in 1..=40 {
            let offset = (k * 40 + step) as i64;
            records.push(reading(offset, site, JAN_1 + step as i64 * STEP_MS, 1.25));
        }
    }
    let write = batch(&mut engine, &records);
    let json = serde_json::to_vec(&engine.partition_checkpoint(PARTITION)).unwrap();
    println!("binary {} bytes, JSON {} bytes", write.bytes(), json.len());
    assert!(
        write.bytes() * 2 < json.len(),
        "binary {} bytes, JSON {} bytes",
        write.bytes(),
        json.len()
    );
}
