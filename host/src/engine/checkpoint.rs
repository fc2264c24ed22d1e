//! The durable state of one input partition: the next offset to read and the open day
//! windows of every site seen in it. It is written in the same Redis transaction as the
//! samples its batch produced, so state, offsets and stored values never disagree.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// State of one partition after a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionCheckpoint {
    pub partition: i32,
    /// The first offset not yet reflected in the store.
    pub next_offset: i64,
    pub sites: BTreeMap<String, SiteSnapshot>,
}

/// A site's event-time clock and retained day windows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteSnapshot {
    pub newest_ts: i64,
    pub days: Vec<DaySnapshot>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaySnapshot {
    pub end_ms: i64,
    pub emitted: bool,
    pub slots: Vec<SlotSnapshot>,
}

/// One output's window: the plugin accumulator (base64) and the last value emitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlotSnapshot {
    pub output: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub failed: bool,
}
