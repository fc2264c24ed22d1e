//! The repartition stage (`iot-host repartition`): reads producers' topics of any layout
//! and writes every reading, keyed by its site, to the readings topic the host reads,
//! exactly once.
//!
//! - [`transform`]: one input record → a reading record keyed by site, or a dead letter.
//! - [`merge`]: the time-aligned merge of the input partitions.
//! - [`stage`]: the Kafka loop (consume, merge, produce and commit in one transaction).
//!
//! **Guarantees.** Every input record ends up exactly once in the output topic (a reading)
//! or in the dead-letter topic (with the topic, partition and offset it came from), as seen
//! by a `read_committed` consumer — the host is one. The records a transaction produces and
//! the input offsets they came from are committed together (`send_offsets_to_transaction`),
//! so a stage killed at any instant leaves either both or neither. A site's readings are
//! written in the order their producers sent them (see [`merge`]), which is what makes
//! late-data classification the same as if they had been sent to one partition.
//!
//! **Duties of the caller.** Consumers of the output must read with
//! `isolation.level=read_committed` (the host does). Producers of the inputs must keep their
//! clocks sane: the merge orders by the record timestamps they set. Each stage instance
//! needs the group's input topics only; nothing else may write to the output topic's
//! partitions in a way that relies on order.
//!
//! **Partitioning.** The output is keyed by site, so all readings of a site share a
//! partition of the readings topic. Stage instances share the work in their own consumer
//! group (`--group`); each holds the input partitions the group gives it. The
//! `transactional.id` names the assigned partition set, so whoever takes a set over (a
//! restarted instance, or another member) fences the previous holder and aborts its open
//! transaction at once; with a group generation check on every offset commit (KIP-447) a
//! member that lost its partitions can never commit for them.
//!
//! **Errors.** A record that cannot be read goes to dead-letter, in the same transaction.
//! A transaction that fails in a way Kafka lets one recover from is aborted and its input
//! read again from the committed offsets. A fenced producer (another instance took over
//! with the same partition set) or a broker that stays away beyond the timeouts ends the
//! stage with an error saying so; restart it (its work resumes from the committed offsets).

pub mod merge;
mod stage;
pub mod transform;

use std::fmt;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use rdkafka::error::KafkaError;

pub use transform::{InputTopic, SiteFrom};

/// Records handed on in one transaction, at most: bounds what an abort re-reads. Under a
/// backlog the commit interval ends a transaction first (measured: 5,000 records per
/// transaction drained 68,831 lines in 2.8 s, 50,000 in 1.4 s; each commit waits for every
/// record's acknowledgement and the commit markers).
pub const DEFAULT_MAX_RECORDS_PER_TRANSACTION: usize = 50_000;
/// How long a transaction stays open at most: the floor of the stage's latency, and how
/// often offsets are committed under a trickle.
pub const DEFAULT_COMMIT_INTERVAL: Duration = Duration::from_millis(100);
/// How long the broker keeps a transaction of a vanished stage open before aborting it
/// (until then `read_committed` readers of its output partitions wait). A restarted stage
/// on the same partition set aborts it at once instead.
pub const DEFAULT_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone)]
pub struct RepartitionConfig {
    pub kafka: String,
    /// The stage's own consumer group.
    pub group: String,
    /// Static membership id: a restarted instance takes its partitions back at once.
    pub instance_id: Option<String>,
    pub inputs: Vec<InputTopic>,
    pub output_topic: String,
    pub dead_letter_topic: String,
    pub transactional_id_prefix: String,
    pub commit_interval: Duration,
    pub max_records_per_transaction: usize,
    pub transaction_timeout: Duration,
    pub session_timeout: Duration,
    pub max_record_bytes: usize,
    pub exit_when_caught_up: bool,
}

/// What the stage did.
#[derive(Debug, Default, Clone, Copy)]
pub struct StageCounts {
    pub consumed: u64,
    pub readings: u64,
    pub dead_letters: u64,
    pub transactions: u64,
    pub aborted: u64,
}

impl fmt::Display for StageCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "consumed={} readings={} dead_letters={} transactions={} aborted={}",
            self.consumed, self.readings, self.dead_letters, self.transactions, self.aborted
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RepartitionError {
    #[error("Kafka {what} failed: {source} (is the broker at --kafka reachable?)")]
    Client {
        what: &'static str,
        #[source]
        source: KafkaError,
    },
    #[error(
        "cannot {what} producer {id:?}: {source} (if another stage instance took over this \
         partition set, this one is a zombie and stops; restart it to rejoin the group)"
    )]
    Transaction {
        what: &'static str,
        id: String,
        #[source]
        source: KafkaError,
    },
    #[error(
        "topic {0:?} does not exist: create it first (`scripts/stack up` creates the standard \
         topics; else kafka-topics.sh --create --topic {0} --partitions 6)"
    )]
    MissingTopic(String),
    #[error("the consumer has no group metadata to commit offsets with (not in a group yet)")]
    NoGroupMetadata,
}

/// Runs the stage until `stop` is set (then commits what it handed on and returns), or
/// until caught up with `exit_when_caught_up`. Blocking: call it from a thread of its own.
pub fn run(config: &RepartitionConfig, stop: &AtomicBool) -> Result<StageCounts, RepartitionError> {
    let mut stage = stage::Stage::connect(config)?;
    tracing::info!(
        inputs = ?config.inputs.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
        output = %config.output_topic,
        group = %config.group,
        "repartition stage running; Ctrl-C stops it"
    );
    stage.run(stop)?;
    Ok(stage.counts)
}
