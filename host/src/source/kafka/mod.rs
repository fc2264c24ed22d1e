//! The Kafka source: one member of a consumer group on the readings topic.
//!
//! Offsets are committed to Kafka only after the batch is durable in the store; the store's
//! checkpoint is the source of truth (the engine skips records below it), so a commit lost
//! in a crash costs a re-read, never a double count.
//!
//! Errors: while the broker is away the client retries on its own; the source reports it
//! to `crate::outage::KAFKA` (one line when the outage starts, one when it ends: the
//! client's statistics say when a broker is up again) instead of a line per retry.
//!
//! - here: [`KafkaSource`], batches read from the assigned partitions, placed at their
//!   checkpoints and committed once durable;
//! - [`group`]: the client and its membership of the group (tuning, rebalances,
//!   statistics, errors).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

use anyhow::Context as _;
use futures_util::StreamExt as _;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

mod group;

pub use group::STATISTICS_INTERVAL_MS;
pub(crate) use group::{is_end_of_partition, report_client_error};
use group::{new_consumer, set_owned, GroupContext, RebalanceLog};

use super::{Source, SourceEvent};
use crate::engine::SourceRecord;
use crate::outage::KAFKA as OUTAGE;

/// How long a batch waits for more records after its first one. Under a backlog a batch
/// fills long before; at a trickle this is the floor of publish→visible latency (20 ms
/// measured a p50 of 24 ms at 5,000 readings/s). The durable side overlaps folding, so small
/// batches cost no stall.
pub const DEFAULT_BATCH_LINGER: Duration = Duration::from_millis(5);
/// How long a member may stay silent before the coordinator gives its partitions away.
/// Measured (`scripts/bench-latency --broker-stall`): with 10 s, a broker stalled for 15 s
/// expired the host's membership on resuming, and with 30 s it did not; a crashed host
/// restarted with the same `--instance-id` takes its partitions back at once either way.
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a seek or a watermark query may wait for the broker.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a partition's seek is retried (a partition just assigned, a broker restarting)
/// before the host gives up with an error.
const SEEK_TIMEOUT: Duration = Duration::from_secs(120);
/// Records gathered between two yields to the runtime while a batch fills.
const YIELD_EVERY: usize = 256;
#[derive(Debug, Clone)]
pub struct KafkaSourceConfig {
    pub bootstrap: String,
    pub group: String,
    pub topic: String,
    /// How long to wait for more records once the first of a batch arrived.
    pub batch_linger: Duration,
    /// Static group membership (`group.instance.id`): a restarted instance with the same id
    /// takes its partitions back at once instead of waiting for a rebalance.
    pub instance_id: Option<String>,
    /// `session.timeout.ms`: see [`DEFAULT_SESSION_TIMEOUT`].
    pub session_timeout: Duration,
}

pub struct KafkaSource {
    consumer: StreamConsumer<GroupContext>,
    config: KafkaSourceConfig,
    log: Arc<Mutex<RebalanceLog>>,
    rebalanced: Arc<Notify>,
    /// Assigned partitions read to their end since their last record.
    at_end: HashSet<i32>,
    /// `CaughtUp` was returned since the last records: not again at once (a live host
    /// would spin), only after the usual wait.
    caught_up_said: bool,
    /// Partitions moved by `rewind` that had more to read, with the end they had then: an
    /// end-of-partition notice the client queued before the seek says nothing about them,
    /// so one counts only once the client's position is at that end (or a record came).
    rewound: HashMap<i32, i64>,
    /// The batch being gathered. It lives here, not in `next`'s future, so that a `next`
    /// dropped half-way (the runner applies a hot swap) loses nothing: the next call
    /// carries on with it.
    batch: Vec<SourceRecord>,
    /// Records handed back by the runner ([`Source::recycle`]): the next records are copied
    /// into their buffers, so reading allocates nothing per record once they are warm.
    spare: Vec<SourceRecord>,
    /// Emptied batches handed back, whose allocations the next batches reuse.
    spare_batches: Vec<Vec<SourceRecord>>,
}

/// How a [`KafkaSource::fill`] ended.
enum Fill {
    /// The batch holds `max` records.
    Full,
    /// The batch's linger ran out (or the client reported an error, logged).
    Lingered,
    /// The client says this partition is read to its end.
    EndOf(i32),
}

/// Emptied batches kept for reuse at most (the runner has a few in flight).
const MAX_SPARE_BATCHES: usize = 2;
/// Records kept for reuse at most: a few batches' worth (each holds its buffers).
const MAX_SPARE_RECORDS: usize = 20_000;
/// A record whose buffers grew past this (a rare large record) is not kept for reuse, so
/// the spares hold at most about `MAX_SPARE_RECORDS` × this.
const MAX_SPARE_BUFFER_BYTES: usize = 4096;

impl KafkaSource {
    pub fn connect(config: KafkaSourceConfig) -> anyhow::Result<KafkaSource> {
        let log = Arc::new(Mutex::new(RebalanceLog::default()));
        let rebalanced = Arc::new(Notify::new());
        let consumer = new_consumer(&config, &log, &rebalanced)?;
        Ok(KafkaSource {
            consumer,
            config,
            log,
            rebalanced,
            at_end: HashSet::new(),
            caught_up_said: false,
            rewound: HashMap::new(),
            batch: Vec::new(),
            spare: Vec::new(),
            spare_batches: Vec::new(),
        })
    }

    /// A consumer that hit a fatal error (e.g. fenced after a broker restart raced its
    /// static-membership rejoin) never consumes again: replace it with a new member. Its
    /// partitions count as revoked (the runner forgets them); the new member's assignment
    /// places them at their checkpoints again.
    fn replace_if_failed(&mut self) -> anyhow::Result<Option<SourceEvent>> {
        let Some((code, reason)) = self.consumer.client().fatal_error() else {
            return Ok(None);
        };
        tracing::warn!(
            "the Kafka consumer stopped with a fatal error ({code:?}: {reason}); joining the group again with a new consumer"
        );
        let revoked: Vec<i32> = {
            let mut log = self.log.lock().expect("rebalance log");
            log.revoked.clear();
            log.newly_assigned.clear();
            log.assigned.drain().collect()
        };
        for &partition in &revoked {
            set_owned(partition, false);
        }
        self.batch.clear();
        self.at_end.clear();
        self.consumer = new_consumer(&self.config, &self.log, &self.rebalanced)?;
        Ok(Some(SourceEvent::Revoked(revoked)))
    }

    /// A rebalance the runner has not heard of yet: revocations first (the runner forgets
    /// those partitions), then assignments (it places them at their checkpoints).
    fn rebalance_event(&mut self) -> Option<SourceEvent> {
        let mut log = self.log.lock().expect("rebalance log");
        if !log.revoked.is_empty() {
            let revoked = std::mem::take(&mut log.revoked);
            for p in &revoked {
                self.at_end.remove(p);
            }
            self.batch.retain(|r| !revoked.contains(&r.partition));
            return Some(SourceEvent::Revoked(revoked));
        }
        if !log.newly_assigned.is_empty() {
            let mut assigned = std::mem::take(&mut log.newly_assigned);
            assigned.sort_unstable();
            assigned.dedup();
            return Some(SourceEvent::Assigned(assigned));
        }
        None
    }

    fn is_assigned(&self, partition: i32) -> bool {
        self.log
            .lock()
            .expect("rebalance log")
            .assigned
            .contains(&partition)
    }

    /// After a seek to `offset`: the partition is at its end if nothing is past it (end
    /// notices queued before the seek are then right), else it waits for its records.
    async fn expect_records_from(&mut self, partition: i32, offset: i64) -> anyhow::Result<()> {
        let (consumer, topic) = (&self.consumer, self.config.topic.as_str());
        let (_low, high) = ask_kafka("where the partition ends", partition, || {
            consumer.fetch_watermarks(topic, partition, METADATA_TIMEOUT)
        })
        .await?;
        if offset >= high {
            self.rewound.remove(&partition);
            self.at_end.insert(partition);
        } else {
            self.rewound.insert(partition, high);
        }
        Ok(())
    }

    /// Every assigned partition is read to its end, and the runner has heard of every
    /// assignment (until it has placed a new partition at its checkpoint, the client's
    /// end-of-partition notices describe where the group left off, not what is to read).
    fn caught_up(&self) -> bool {
        let log = self.log.lock().expect("rebalance log");
        !log.assigned.is_empty()
            && log.newly_assigned.is_empty()
            && log.assigned.iter().all(|p| self.at_end.contains(p))
    }

    /// Takes an end-of-partition notice; false if it predates a rewind (ignored).
    fn reached_end(&mut self, partition: i32) -> bool {
        if let Some(&end) = self.rewound.get(&partition) {
            if self.position(partition).is_none_or(|at| at < end) {
                return false;
            }
            self.rewound.remove(&partition);
        }
        self.at_end.insert(partition);
        true
    }

    /// Adds what the client has to the batch, up to `max` records, waiting for more until
    /// `deadline`. One message stream serves the whole fill: making one per record
    /// registered and removed a waker under a lock every time.
    async fn fill(&mut self, max: usize, deadline: tokio::time::Instant) -> Fill {
        let mut stream = self.consumer.stream();
        while self.batch.len() < max {
            if self.batch.len().is_multiple_of(YIELD_EVERY) {
                // The client hands over prefetched records without ever making the task
                // wait: let the rest of the host (the durable side shares this task) run.
                tokio::task::yield_now().await;
            }
            match tokio::time::timeout_at(deadline, stream.next()).await {
                Err(_) => return Fill::Lingered,
                Ok(None) => unreachable!("a Kafka message stream never ends"),
                Ok(Some(Ok(message))) => push(
                    &mut self.at_end,
                    &mut self.rewound,
                    &mut self.batch,
                    &mut self.spare,
                    &message,
                ),
                Ok(Some(Err(KafkaError::PartitionEOF(p)))) => return Fill::EndOf(p),
                Ok(Some(Err(e))) => {
                    report_client_error(&e, "consumer");
                    return Fill::Lingered;
                }
            }
        }
        Fill::Full
    }

    /// The client's position in a partition (the next offset it will hand over), if known.
    fn position(&self, partition: i32) -> Option<i64> {
        let positions = self.consumer.position().ok()?;
        match positions
            .find_partition(&self.config.topic, partition)?
            .offset()
        {
            Offset::Offset(at) => Some(at),
            _ => None,
        }
    }
}

/// A question to the broker about a partition, asked again while the broker cannot answer
/// (an outage) for up to [`SEEK_TIMEOUT`].
async fn ask_kafka<T>(
    what: &str,
    partition: i32,
    mut ask: impl FnMut() -> rdkafka::error::KafkaResult<T>,
) -> anyhow::Result<T> {
    let deadline = tokio::time::Instant::now() + SEEK_TIMEOUT;
    loop {
        match ask() {
            Ok(answer) => return Ok(answer),
            Err(e) if tokio::time::Instant::now() < deadline => {
                report_client_error(&e, what);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "Kafka did not say {what} of partition {partition} within {SEEK_TIMEOUT:?}"
                    )
                })
            }
        }
    }
}

/// Adds a record to the batch: its partition is no longer at its end, and no longer
/// waiting for its first record after a rewind. The record reuses a spare one's buffers
/// when there is one. (A free function: the message borrows the consumer, so it cannot
/// take the whole source.)
fn push(
    at_end: &mut HashSet<i32>,
    rewound: &mut HashMap<i32, i64>,
    records: &mut Vec<SourceRecord>,
    spare: &mut Vec<SourceRecord>,
    message: &rdkafka::message::BorrowedMessage<'_>,
) {
    let partition = message.partition();
    if !at_end.is_empty() {
        at_end.remove(&partition);
    }
    if !rewound.is_empty() {
        rewound.remove(&partition);
    }
    let mut record = spare.pop().unwrap_or_else(|| SourceRecord {
        partition,
        offset: 0,
        key: None,
        payload: Vec::new(),
    });
    record.partition = partition;
    record.offset = message.offset();
    copy_into(&mut record.payload, message.payload().unwrap_or_default());
    match (message.key(), &mut record.key) {
        (Some(key), Some(buffer)) => copy_into(buffer, key),
        (Some(key), none) => *none = Some(key.to_vec()),
        (None, key) => *key = None,
    }
    records.push(record);
}

fn copy_into(buffer: &mut Vec<u8>, bytes: &[u8]) {
    buffer.clear();
    buffer.extend_from_slice(bytes);
}

impl Source for KafkaSource {
    fn holds(&self, partition: i32) -> bool {
        self.is_assigned(partition)
    }

    async fn next(&mut self, max: usize) -> anyhow::Result<SourceEvent> {
        if let Some(event) = self.replace_if_failed()? {
            return Ok(event);
        }
        if let Some(event) = self.rebalance_event() {
            return Ok(event);
        }
        // The last batch ended at the end of every partition: say so now, not after waiting
        // for records that are not there (once per arrival at the end).
        if self.batch.is_empty() && !self.caught_up_said && self.caught_up() {
            self.caught_up_said = true;
            return Ok(SourceEvent::CaughtUp);
        }
        // Wait for the first record (or an end-of-partition notice), then take what is
        // already there, up to `max`, lingering briefly so batches are worth a round trip.
        while self.batch.is_empty() {
            let waited = tokio::select! {
                waited = tokio::time::timeout(Duration::from_millis(500), self.consumer.recv()) => waited,
                () = self.rebalanced.notified() => match self.rebalance_event() {
                    Some(event) => return Ok(event),
                    None => continue,
                },
            };
            match waited {
                Err(_) => {
                    if self.caught_up() {
                        return Ok(SourceEvent::CaughtUp);
                    }
                    if let Some(event) = self.replace_if_failed()? {
                        return Ok(event);
                    }
                    match self.rebalance_event() {
                        Some(event) => return Ok(event),
                        None => continue,
                    }
                }
                Ok(Ok(message)) => {
                    OUTAGE.succeeded();
                    push(
                        &mut self.at_end,
                        &mut self.rewound,
                        &mut self.batch,
                        &mut self.spare,
                        &message,
                    )
                }
                Ok(Err(KafkaError::PartitionEOF(p))) => {
                    if self.reached_end(p) && self.caught_up() {
                        return Ok(SourceEvent::CaughtUp);
                    }
                }
                Ok(Err(e)) => {
                    report_client_error(&e, "consumer");
                    if let Some(event) = self.replace_if_failed()? {
                        return Ok(event);
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        let deadline = tokio::time::Instant::now() + self.config.batch_linger;
        while self.batch.len() < max {
            match self.fill(max, deadline).await {
                Fill::Full | Fill::Lingered => break,
                Fill::EndOf(p) => {
                    if self.reached_end(p) && self.caught_up() {
                        break;
                    }
                }
            }
        }
        // The next batch starts at full size: growing a Vec of thousands of records by
        // doubling copied each batch about twice over.
        let next = self
            .spare_batches
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(max));
        let batch = std::mem::replace(&mut self.batch, next);
        self.caught_up_said = false;
        Ok(SourceEvent::Records(batch))
    }

    fn recycle(&mut self, records: Vec<SourceRecord>) {
        let room = MAX_SPARE_RECORDS.saturating_sub(self.spare.len());
        let small = |r: &SourceRecord| {
            r.payload.capacity() + r.key.as_ref().map_or(0, Vec::capacity) <= MAX_SPARE_BUFFER_BYTES
        };
        let mut records = records;
        self.spare
            .extend(records.drain(..).filter(small).take(room));
        if self.spare_batches.len() < MAX_SPARE_BATCHES {
            // Its allocation is the next batch's: a fresh one of thousands of records is
            // new pages for the kernel to fault in and zero, every batch.
            self.spare_batches.push(records);
        }
    }

    async fn commit(&mut self, next_offsets: &[(i32, i64)]) -> anyhow::Result<()> {
        if next_offsets.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for &(partition, offset) in next_offsets {
            tpl.add_partition_offset(&self.config.topic, partition, Offset::Offset(offset))?;
        }
        // Async commit: the store's checkpoint is authoritative, this only saves a re-read.
        if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
            tracing::debug!("offset commit failed (harmless, the checkpoint decides): {e}");
        }
        Ok(())
    }

    async fn rewind(&mut self, partition: i32, offset: i64) -> anyhow::Result<()> {
        self.batch.retain(|r| r.partition != partition);
        self.at_end.remove(&partition);
        // The fetcher may still be starting on a partition just assigned, or the broker be
        // busy: retry for a while. A partition taken away meanwhile needs no seek.
        let deadline = tokio::time::Instant::now() + SEEK_TIMEOUT;
        loop {
            match self.consumer.seek(
                &self.config.topic,
                partition,
                Offset::Offset(offset),
                METADATA_TIMEOUT,
            ) {
                Ok(()) => return self.expect_records_from(partition, offset).await,
                Err(_) if !self.is_assigned(partition) => return Ok(()),
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(partition, offset, "seek failed, retrying: {e}");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!(
                            "cannot move partition {partition} to offset {offset} within {SEEK_TIMEOUT:?}"
                        )
                    })
                }
            }
        }
    }

    async fn committed_offset(&mut self, partition: i32) -> anyhow::Result<Option<i64>> {
        let (consumer, topic) = (&self.consumer, self.config.topic.as_str());
        let committed = ask_kafka("the group's offset", partition, || {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(topic, partition);
            consumer.committed_offsets(tpl, METADATA_TIMEOUT)
        })
        .await?;
        Ok(committed
            .find_partition(topic, partition)
            .and_then(|p| p.offset().to_raw())
            .filter(|&o| o >= 0))
    }

    async fn first_offset(&mut self, partition: i32) -> anyhow::Result<i64> {
        let (consumer, topic) = (&self.consumer, self.config.topic.as_str());
        let (low, _high) = ask_kafka("where the partition starts", partition, || {
            consumer.fetch_watermarks(topic, partition, METADATA_TIMEOUT)
        })
        .await?;
        Ok(low)
    }
}
