//! What one batch of input produces: samples for RedisTimeSeries, records for the output
//! topics, new series to create, and the checkpoint that makes the batch durable.

use std::sync::Arc;

use iot_protocol::SeriesName;
use serde::{Deserialize, Serialize};

use super::checkpoint_format::CheckpointWrite;

/// Index of a series in the engine's registry; stable for the life of the process.
pub type SeriesId = u32;

/// A series the store must create (with duplicate policy LAST) before its first sample.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesDef {
    pub id: SeriesId,
    pub name: SeriesName,
    pub key: String,
    pub unit: String,
}

/// One value at one instant of one series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StoredSample {
    pub series: SeriesId,
    /// The input partition whose records produced it (a cluster store fences each site's
    /// writes with its partition's owner epoch). Fits beside `series`: no larger sample.
    pub partition: i32,
    pub ts_ms: i64,
    pub value: f64,
}

/// The Kafka topics the host writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OutTopic {
    Aggregates,
    LateRejected,
    DeadLetter,
    PluginErrors,
    /// Alarms raised by alarm rules (outputs of kind Alarm).
    Alarms,
}

impl OutTopic {
    /// The topic's role, as the `topic` label of the metrics (the default topic names;
    /// the configured names may differ).
    pub fn metric_label(self) -> &'static str {
        match self {
            OutTopic::Aggregates => "aggregates",
            OutTopic::LateRejected => "late-rejected",
            OutTopic::DeadLetter => "dead-letter",
            OutTopic::PluginErrors => "plugin-errors",
            OutTopic::Alarms => "alarms",
        }
    }
}

/// One record for an output topic.
#[derive(Debug, Clone, PartialEq)]
pub struct OutRecord {
    pub topic: OutTopic,
    pub key: Option<String>,
    pub value: String,
}

/// Everything a batch produced, in the order it must be made durable: records first
/// (at least once), then samples and checkpoints in one atomic step, then source offsets.
#[derive(Debug, Default)]
pub struct Effects {
    pub new_series: Vec<SeriesDef>,
    pub samples: Vec<StoredSample>,
    pub records: Vec<OutRecord>,
    pub checkpoints: Vec<CheckpointWrite>,
    /// Plugin builds first used in this batch, by SHA-256: the store archives them so a
    /// restart can finish the windows they wrote (see the swap rules in `engine/tenant.rs`).
    pub plugin_builds: Vec<(String, Arc<[u8]>)>,
}

impl Effects {
    pub fn is_empty(&self) -> bool {
        self.new_series.is_empty()
            && self.samples.is_empty()
            && self.records.is_empty()
            && self.checkpoints.is_empty()
            && self.plugin_builds.is_empty()
    }
}
