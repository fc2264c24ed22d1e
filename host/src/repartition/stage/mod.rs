//! The stage's Kafka loop: consume, merge, produce in a transaction, commit the consumed
//! offsets in the same transaction. Blocking; runs on a thread of its own.
//!
//! - here: the input side (the consumer, rebalances, the merge, where inputs end, pausing
//!   a partition that runs ahead);
//! - [`transaction`]: the output side (the transactional producer and its transactions).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::BaseProducer;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

mod transaction;

pub(super) use transaction::transactional_id;
use transaction::{Transaction, TRANSACTION_CALL_TIMEOUT};

use super::merge::{InputPartition, Merge, MergeKey};
use super::transform::{transform, Origin, Transformed};
use super::{RepartitionConfig, RepartitionError, StageCounts};

/// How long a poll waits when nothing is ready to hand on.
const IDLE_POLL: Duration = Duration::from_millis(20);
/// Records buffered for one input partition before it is paused (it runs ahead of the
/// others in send time); resumed when half of them are handed on. Bounds memory.
const MAX_BUFFERED_PER_PARTITION: usize = 20_000;
/// How long the broker holds a fetch that finds nothing new. The merge waits for every
/// partition that is not known to be at its end, and it learns that from the fetch that
/// came back empty: this bounds what each record waits for its slowest neighbour.
const FETCH_WAIT_MAX_MS: &str = "10";
/// Records taken from the client between two looks at the merge.
const MAX_RECORDS_PER_POLL: usize = 1024;
/// How often the stage logs what it did.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// What the rebalance callbacks saw; the loop acts on it after each poll.
#[derive(Default)]
struct Rebalances {
    revoked: bool,
    assigned: Option<Vec<(String, i32)>>,
}

struct StageContext {
    rebalances: Arc<Mutex<Rebalances>>,
}

impl ClientContext for StageContext {
    fn error(&self, error: KafkaError, reason: &str) {
        // End-of-partition notices are how the stage learns where inputs end, not faults.
        if !reason.contains("reached end of partition") {
            tracing::warn!("Kafka client: {error}: {reason}");
        }
    }
}

impl ConsumerContext for StageContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(_) = rebalance {
            self.rebalances.lock().expect("rebalances").revoked = true;
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            let partitions = list
                .elements()
                .iter()
                .map(|e| (e.topic().to_owned(), e.partition()))
                .collect();
            self.rebalances.lock().expect("rebalances").assigned = Some(partitions);
        }
    }
}

/// One record waiting in the merge.
struct Pending {
    offset: i64,
    out: Transformed,
}

pub(super) struct Stage<'a> {
    config: &'a RepartitionConfig,
    rebalances: Arc<Mutex<Rebalances>>,
    consumer: BaseConsumer<StageContext>,
    /// The transactional producer of the current assignment (`None` while unassigned).
    producer: Option<BaseProducer>,
    merge: Merge<Pending>,
    /// The next offset of every partition handed on in the open transaction.
    offsets: HashMap<InputPartition, i64>,
    transaction: Option<Transaction>,
    paused: HashSet<InputPartition>,
    /// Partitions that may be at their end (see `check_ends`).
    to_check: HashSet<InputPartition>,
    /// A client of its own for asking where partitions end.
    watermarks: BaseConsumer,
    /// Committed offsets of the assigned partitions, as of the assignment.
    starts: HashMap<InputPartition, i64>,
    producer_id: String,
    pub(super) counts: StageCounts,
}

impl<'a> Stage<'a> {
    pub(super) fn connect(config: &'a RepartitionConfig) -> Result<Stage<'a>, RepartitionError> {
        let rebalances = Arc::new(Mutex::new(Rebalances::default()));
        let mut client = ClientConfig::new();
        if let Some(id) = &config.instance_id {
            client.set("group.instance.id", id);
        }
        let consumer: BaseConsumer<StageContext> = client
            .set("bootstrap.servers", &config.kafka)
            .set("group.id", &config.group)
            // Offsets are committed only inside the output transaction.
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            // Inputs written by transactions (another stage) are read once committed.
            .set("isolation.level", "read_committed")
            .set(
                "session.timeout.ms",
                config.session_timeout.as_millis().to_string(),
            )
            // End-of-partition notices say when to ask whether the merge may stop waiting.
            .set("enable.partition.eof", "true")
            .set("fetch.wait.max.ms", FETCH_WAIT_MAX_MS)
            .set("fetch.queue.backoff.ms", "5")
            .create_with_context(StageContext {
                rebalances: rebalances.clone(),
            })
            .map_err(|source| RepartitionError::Client {
                what: "consumer",
                source,
            })?;
        let watermarks: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &config.kafka)
            .create()
            .map_err(|source| RepartitionError::Client {
                what: "metadata client",
                source,
            })?;
        for topic in [&config.output_topic, &config.dead_letter_topic] {
            require_topic(&consumer, topic)?;
        }
        let topics: Vec<&str> = config.inputs.iter().map(|i| i.name.as_str()).collect();
        consumer
            .subscribe(&topics)
            .map_err(|source| RepartitionError::Client {
                what: "subscription",
                source,
            })?;
        Ok(Stage {
            config,
            rebalances,
            consumer,
            producer: None,
            merge: Merge::default(),
            offsets: HashMap::new(),
            transaction: None,
            paused: HashSet::new(),
            to_check: HashSet::new(),
            watermarks,
            starts: HashMap::new(),
            producer_id: String::new(),
            counts: StageCounts::default(),
        })
    }

    /// Runs until `stop` is set (or, with `exit_when_caught_up`, until every input is
    /// read to its end and committed).
    pub(super) fn run(&mut self, stop: &AtomicBool) -> Result<(), RepartitionError> {
        let mut last_progress = Instant::now();
        loop {
            self.apply_rebalances()?;
            if stop.load(Ordering::Relaxed) {
                return self.commit();
            }
            self.poll()?;
            self.check_ends()?;
            self.hand_on()?;
            if self.transaction_due() {
                self.commit()?;
            }
            if last_progress.elapsed() >= PROGRESS_EVERY {
                last_progress = Instant::now();
                tracing::info!(counts = %self.counts, "repartition progress");
            }
            if self.config.exit_when_caught_up && self.transaction.is_none() && self.merge.drained()
            {
                tracing::info!(counts = %self.counts, "repartition caught up: every input read to its end and committed");
                return Ok(());
            }
        }
    }

    /// Takes what the client has (waiting a little for the first record), stopping early
    /// at a rebalance so no record is filed under the wrong assignment.
    fn poll(&mut self) -> Result<(), RepartitionError> {
        let mut wait = IDLE_POLL;
        for _ in 0..MAX_RECORDS_PER_POLL {
            let Some(event) = self.consumer.poll(wait) else {
                return Ok(());
            };
            wait = Duration::ZERO;
            match event {
                Ok(message) => {
                    let Some(topic) = self.input_index(message.topic()) else {
                        continue;
                    };
                    let buffered = take(
                        self.config,
                        topic,
                        &message,
                        &mut self.merge,
                        &mut self.counts,
                    );
                    let partition = (topic, message.partition());
                    drop(message);
                    if buffered >= MAX_BUFFERED_PER_PARTITION && self.paused.insert(partition) {
                        self.set_paused(partition, true);
                    }
                }
                // The notice names no topic: every input partition of that number is asked
                // where it ends (`check_ends`).
                Err(KafkaError::PartitionEOF(partition)) => {
                    for p in self.merge.partitions() {
                        if p.1 == partition {
                            self.to_check.insert(p);
                        }
                    }
                }
                Err(e) => tracing::warn!("Kafka consumer: {e}"),
            }
            if self.rebalance_pending() {
                return self.apply_rebalances();
            }
        }
        Ok(())
    }

    fn rebalance_pending(&self) -> bool {
        let r = self.rebalances.lock().expect("rebalances");
        r.revoked || r.assigned.is_some()
    }

    /// After a revoke, the open transaction is aborted (its records are read again by the
    /// partitions' next owner); after an assignment, a producer for the new partition set.
    fn apply_rebalances(&mut self) -> Result<(), RepartitionError> {
        let (revoked, assigned) = {
            let mut r = self.rebalances.lock().expect("rebalances");
            (std::mem::take(&mut r.revoked), r.assigned.take())
        };
        if revoked {
            if let Err(e) = self.abort("its partitions were revoked") {
                // The partitions' next holder fences this producer and aborts the
                // transaction itself when it initialises its own.
                tracing::warn!("{e}; dropping the producer instead");
            }
            self.merge.assign([]);
            self.paused.clear();
            self.producer = None;
        }
        if let Some(assigned) = assigned {
            let partitions: Vec<InputPartition> = assigned
                .iter()
                .filter_map(|(topic, p)| self.input_index(topic).map(|i| (i, *p)))
                .collect();
            self.merge.assign(partitions.iter().copied());
            self.to_check = partitions.iter().copied().collect();
            self.starts = self.committed(&assigned)?;
            self.producer_id = transactional_id(&self.config.transactional_id_prefix, &assigned);
            self.producer = if assigned.is_empty() {
                None
            } else {
                Some(self.transactional_producer()?)
            };
            tracing::info!(partitions = ?assigned, "repartition assigned");
        }
        Ok(())
    }

    /// Where each assigned partition starts: its committed offset (none: the beginning).
    fn committed(
        &self,
        assigned: &[(String, i32)],
    ) -> Result<HashMap<InputPartition, i64>, RepartitionError> {
        let mut list = TopicPartitionList::new();
        for (topic, partition) in assigned {
            list.add_partition(topic, *partition);
        }
        let committed = self
            .consumer
            .committed_offsets(list, TRANSACTION_CALL_TIMEOUT)
            .map_err(|source| RepartitionError::Client {
                what: "committed offsets",
                source,
            })?;
        Ok(committed
            .elements()
            .iter()
            .filter_map(|e| {
                let input = self.input_index(e.topic())?;
                match e.offset() {
                    Offset::Offset(o) => Some(((input, e.partition()), o)),
                    _ => None,
                }
            })
            .collect())
    }

    fn input_index(&self, topic: &str) -> Option<usize> {
        self.config.inputs.iter().position(|i| i.name == topic)
    }

    /// Partitions with nothing buffered that may be at their end (a notice said so, or
    /// just assigned): are they? The client's end-of-partition notice names no topic, so
    /// the stage asks where each candidate ends — on a client of its own, because the
    /// consumer's connection is busy with fetches that wait for records.
    fn check_ends(&mut self) -> Result<(), RepartitionError> {
        let candidates: Vec<InputPartition> = self
            .to_check
            .iter()
            .copied()
            .filter(|&p| self.merge.buffered(p) == 0)
            .collect();
        if candidates.is_empty() {
            return Ok(());
        }
        let positions = self.consumer.position().ok();
        for partition in candidates {
            let topic = &self.config.inputs[partition.0].name;
            let Ok((low, high)) =
                self.watermarks
                    .fetch_watermarks(topic, partition.1, TRANSACTION_CALL_TIMEOUT)
            else {
                continue; // asked again after the next poll
            };
            self.to_check.remove(&partition);
            // The next record to hand on: the client's position once it handed one over,
            // else where the partition was committed, else its start.
            let consumed = positions
                .as_ref()
                .and_then(|list| list.find_partition(topic, partition.1))
                .and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                });
            let at = consumed
                .or_else(|| self.starts.get(&partition).copied())
                .unwrap_or(low);
            if at >= high {
                self.merge.reached_end(partition);
            }
        }
        Ok(())
    }

    /// Hands on what the merge releases, in a transaction.
    fn hand_on(&mut self) -> Result<(), RepartitionError> {
        while self
            .transaction
            .as_ref()
            .is_none_or(|t| t.records < self.config.max_records_per_transaction)
        {
            let Some((partition, pending)) = self.merge.pop() else {
                break;
            };
            self.begin()?;
            self.produce(&pending.out)?;
            self.offsets.insert(partition, pending.offset + 1);
            if let Some(t) = self.transaction.as_mut() {
                t.records += 1;
            }
            if self.paused.contains(&partition)
                && self.merge.buffered(partition) <= MAX_BUFFERED_PER_PARTITION / 2
            {
                self.paused.remove(&partition);
                self.set_paused(partition, false);
            }
        }
        Ok(())
    }

    /// Back to the committed offsets (after an abort the consumed records are read again).
    fn rewind(&mut self) -> Result<(), RepartitionError> {
        self.merge.clear();
        // Where each partition ends is asked again (a partition at its end gets no notice
        // after a seek to where it already was).
        self.to_check = self.merge.partitions().collect();
        let assignment = self
            .consumer
            .assignment()
            .map_err(|source| RepartitionError::Client {
                what: "assignment",
                source,
            })?;
        let committed = self
            .consumer
            .committed_offsets(assignment, TRANSACTION_CALL_TIMEOUT)
            .map_err(|source| RepartitionError::Client {
                what: "committed offsets",
                source,
            })?;
        for e in committed.elements() {
            let to = match e.offset() {
                Offset::Offset(o) => Offset::Offset(o),
                _ => Offset::Beginning,
            };
            self.consumer
                .seek(e.topic(), e.partition(), to, TRANSACTION_CALL_TIMEOUT)
                .map_err(|source| RepartitionError::Client {
                    what: "seek",
                    source,
                })?;
        }
        Ok(())
    }

    fn set_paused(&self, (topic, partition): InputPartition, pause: bool) {
        let mut list = TopicPartitionList::new();
        list.add_partition(&self.config.inputs[topic].name, partition);
        let result = if pause {
            self.consumer.pause(&list)
        } else {
            self.consumer.resume(&list)
        };
        if let Err(e) = result {
            tracing::warn!("cannot pause or resume an input partition: {e}");
        }
    }
}

/// The stage writes only to topics that exist: a missing one would fail every transaction
/// (the broker does not create topics for transactional producers).
fn require_topic(
    consumer: &BaseConsumer<StageContext>,
    topic: &str,
) -> Result<(), RepartitionError> {
    let metadata = consumer
        .fetch_metadata(Some(topic), TRANSACTION_CALL_TIMEOUT)
        .map_err(|source| RepartitionError::Client {
            what: "metadata request",
            source,
        })?;
    let exists = metadata
        .topics()
        .iter()
        .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty());
    if exists {
        Ok(())
    } else {
        Err(RepartitionError::MissingTopic(topic.to_owned()))
    }
}

/// Transforms a consumed record and buffers it for the merge; returns how many records its
/// partition has buffered now.
fn take(
    config: &RepartitionConfig,
    topic: usize,
    message: &BorrowedMessage<'_>,
    merge: &mut Merge<Pending>,
    counts: &mut StageCounts,
) -> usize {
    let partition = (topic, message.partition());
    let origin = Origin {
        topic: message.topic(),
        partition: message.partition(),
        offset: message.offset(),
    };
    let out = transform(
        &config.inputs[topic],
        message.key(),
        message.payload().unwrap_or_default(),
        origin,
        config.max_record_bytes,
    );
    let event_ms = match &out {
        Transformed::Reading { ts_ms, .. } => *ts_ms,
        Transformed::DeadLetter { .. } => i64::MIN,
    };
    // A record without a timestamp (very old producers) is ordered by its reading's time.
    let sent_ms = message.timestamp().to_millis().unwrap_or(event_ms);
    merge.push(
        partition,
        MergeKey { sent_ms, event_ms },
        Pending {
            offset: message.offset(),
            out,
        },
    );
    counts.consumed += 1;
    merge.buffered(partition)
}
