//! The durable state of one input partition: the next offset to read and the open day
//! windows of every site seen in it. It is written in the same Redis transaction as the
//! samples its batch produced, so state, offsets and stored values never disagree.
//!
//! Outputs are named (`name:kind`), not numbered, so a checkpoint survives pipeline edits;
//! accumulators name the plugin build that wrote them (by content hash) so a restart
//! finishes each window with the build the swap rules give it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// State of one partition after a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionCheckpoint {
    pub partition: i32,
    /// The first offset not yet reflected in the store.
    pub next_offset: i64,
    /// The plugin builds the slots below refer to (by index).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub builds: Vec<BuildRef>,
    pub sites: BTreeMap<String, SiteSnapshot>,
    /// The stamp convention the windows were filed under (absent: interval-end). A host
    /// started with another `--stamps` refuses the checkpoint rather than mix the two.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stamps: Option<String>,
}

/// A plugin build, by the SHA-256 of its component; its bytes are archived in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildRef {
    pub hash: String,
    pub state_version: u32,
}

/// A site's event-time clock and retained day windows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteSnapshot {
    pub newest_ts: i64,
    /// The tenant's outputs (`name:kind`) when the snapshot was taken; slots refer to them
    /// by index.
    #[serde(default)]
    pub outputs: Vec<String>,
    /// Outputs added or redefined while the site was running: they compute only windows
    /// starting after this instant (by index into `outputs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output_from: Vec<(u32, i64)>,
    pub days: Vec<DaySnapshot>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaySnapshot {
    pub end_ms: i64,
    pub emitted: bool,
    pub slots: Vec<SlotSnapshot>,
}

/// One output's window: the plugin accumulator (base64), the build that wrote it, the last
/// value emitted, and — when a plugin failed on it — the samples held for a fixed build.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlotSnapshot {
    pub output: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Index into [`PartitionCheckpoint::builds`] of the build that wrote `state`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Index into [`PartitionCheckpoint::builds`] of the build that failed on this window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_by: Option<u32>,
    /// Samples not folded yet because the plugin failed (base64, 20 bytes each).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<String>,
}
