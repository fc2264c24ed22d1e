//! Membership of the consumer group: the Kafka client the source reads through, how it is
//! tuned, and what it reports back (rebalances, statistics, errors).
//!
//! Guarantees: every rebalance is logged (`partitions assigned` / `partitions revoked`),
//! reflected in `iot_partition_owned` and queued in the [`RebalanceLog`] for the source to
//! hand to the runner, revocations before assignments. The client's statistics (every
//! [`STATISTICS_INTERVAL_MS`]) set `iot_consumer_lag` and tell the Kafka outage tracker when
//! brokers are back.
//!
//! Errors: a client error that says the broker cannot be reached is part of an outage
//! (`crate::outage::KAFKA`, one line per outage); any other is a warning of its own.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::ClientContext;
use tokio::sync::Notify;

use super::KafkaSourceConfig;
use crate::outage::KAFKA as OUTAGE;

/// Records per partition the client keeps prefetched (about 1 MB of JSON readings).
const QUEUED_MIN_MESSAGES: &str = "10000";
/// How soon the client fetches again once its queue is past `QUEUED_MIN_MESSAGES`.
const FETCH_QUEUE_BACKOFF_MS: &str = "5";
/// At most this many KiB prefetched in all (librdkafka's default is 64 MiB).
const QUEUED_MAX_KBYTES: &str = "16384";
/// See `fetch.wait.max.ms` where the consumer is made.
const FETCH_WAIT_MAX_MS: &str = "50";
/// How often the client reports its brokers' states (how an outage's end is seen).
pub const STATISTICS_INTERVAL_MS: &str = "1000";

#[derive(Default)]
pub(super) struct RebalanceLog {
    pub(super) revoked: Vec<i32>,
    /// Assigned since the runner last heard of it.
    pub(super) newly_assigned: Vec<i32>,
    pub(super) assigned: HashSet<i32>,
}

pub(super) struct GroupContext {
    log: Arc<Mutex<RebalanceLog>>,
    /// Woken by every rebalance, so the source hands it to the runner at once rather than
    /// when the next record arrives (a new partition starts at its checkpoint sooner: on a
    /// new group the client would otherwise wait ~100 ms to look up where to start).
    rebalanced: Arc<Notify>,
}

impl ClientContext for GroupContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        crate::outage::kafka_client_log(level, fac, message);
    }

    fn stats_raw(&self, statistics: &[u8]) {
        let Ok(statistics) = serde_json::from_slice::<rdkafka::Statistics>(statistics) else {
            return;
        };
        crate::outage::kafka_brokers_seen(&statistics);
        report_lag(&statistics);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // End of partition is how the source knows it caught up, not a fault.
        if !is_end_of_partition(&error) {
            report_client_error(&error, reason);
        }
    }
}

/// Sets `iot_consumer_lag` from the client's statistics (every `STATISTICS_INTERVAL_MS`):
/// each partition it reads has its lag; a partition it no longer reads loses its gauge.
fn report_lag(statistics: &rdkafka::Statistics) {
    let lag = &crate::metrics::global().consumer_lag;
    for topic in statistics.topics.values() {
        for (&partition, stats) in &topic.partitions {
            if partition < 0 {
                continue; // librdkafka's internal "unassigned" partition
            }
            let labels = crate::metrics::PartitionLabels { partition };
            if stats.fetch_state == "none" {
                lag.remove(&labels); // not read by this client (any more)
            } else if stats.consumer_lag >= 0 {
                // -1 until the client knows both its position and the partition's end.
                lag.get_or_create(&labels).set(stats.consumer_lag);
            }
        }
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(
        &self,
        _consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &Rebalance<'_>,
    ) {
        let mut log = self.log.lock().expect("rebalance log");
        match rebalance {
            Rebalance::Revoke(tpl) => {
                for p in tpl.elements() {
                    set_owned(p.partition(), false);
                    log.revoked.push(p.partition());
                    log.assigned.remove(&p.partition());
                    // Assigned and revoked before the runner heard of it: not assigned now
                    // (taking it over would claim a partition the group gave to another).
                    log.newly_assigned.retain(|&n| n != p.partition());
                }
                tracing::info!(partitions = ?tpl.elements().iter().map(|p| p.partition()).collect::<Vec<_>>(), "partitions revoked");
            }
            Rebalance::Assign(tpl) => {
                for p in tpl.elements() {
                    set_owned(p.partition(), true);
                    log.assigned.insert(p.partition());
                    log.newly_assigned.push(p.partition());
                }
                crate::profile::partitions_assigned();
                tracing::info!(partitions = ?tpl.elements().iter().map(|p| p.partition()).collect::<Vec<_>>(), "partitions assigned");
            }
            Rebalance::Error(e) => tracing::warn!("rebalance error: {e}"),
        }
        self.rebalanced.notify_one();
    }
}

/// A partition read to its end: how readers know they caught up, reported by the client
/// as an error (per partition, or as a global one).
pub(crate) fn is_end_of_partition(error: &KafkaError) -> bool {
    matches!(
        error,
        KafkaError::PartitionEOF(_)
            | KafkaError::Global(rdkafka::types::RDKafkaErrorCode::PartitionEOF)
    )
}

/// A client error: part of an outage when it says the broker cannot be reached (logged
/// once per outage), otherwise a warning of its own.
pub(crate) fn report_client_error(error: &KafkaError, context: &str) {
    use rdkafka::types::RDKafkaErrorCode as C;
    let unreachable = matches!(
        error.rdkafka_error_code(),
        Some(
            C::BrokerTransportFailure
                | C::AllBrokersDown
                | C::Resolve
                | C::OperationTimedOut
                | C::RequestTimedOut
                | C::NetworkException
                | C::CoordinatorNotAvailable
                | C::CoordinatorLoadInProgress
                | C::NotCoordinator
                | C::LeaderNotAvailable
                | C::NotLeaderForPartition
        )
    );
    if unreachable {
        OUTAGE.failed(&format_args!("{error}: {context}"));
    } else {
        tracing::warn!("Kafka client error: {error}: {context}");
    }
}

pub(super) fn new_consumer(
    config: &KafkaSourceConfig,
    log: &Arc<Mutex<RebalanceLog>>,
    rebalanced: &Arc<Notify>,
) -> anyhow::Result<StreamConsumer<GroupContext>> {
    let mut client = ClientConfig::new();
    if let Some(id) = &config.instance_id {
        client.set("group.instance.id", id);
    }
    let consumer: StreamConsumer<GroupContext> = client
        .set("bootstrap.servers", &config.bootstrap)
        .set("group.id", &config.group)
        .set("enable.auto.commit", "false")
        .set(
            "session.timeout.ms",
            config.session_timeout.as_millis().to_string(),
        )
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .set("fetch.min.bytes", "1")
        // How long the broker holds a fetch that finds nothing new. The end of a partition
        // is only known from such an empty fetch, so librdkafka's 500 ms was the tail of
        // every drain (measured); idle, this is a few more small requests a second.
        .set("fetch.wait.max.ms", FETCH_WAIT_MAX_MS)
        // Keep fetching while the local queue holds fewer than this per partition…
        .set("queued.min.messages", QUEUED_MIN_MESSAGES)
        // …and, once it holds more, ask again soon: librdkafka's default (1 s) left the
        // host idle, waiting for records, for most of a backlog drain (measured).
        .set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS)
        // Bounds what the client prefetches, whatever the backlog (RSS stays flat).
        .set("queued.max.messages.kbytes", QUEUED_MAX_KBYTES)
        .set("statistics.interval.ms", STATISTICS_INTERVAL_MS)
        .create_with_context(GroupContext {
            log: log.clone(),
            rebalanced: rebalanced.clone(),
        })
        .with_context(|| format!("cannot create a Kafka consumer for {}", config.bootstrap))?;
    consumer
        .subscribe(&[&config.topic])
        .with_context(|| format!("cannot subscribe to topic {:?}", config.topic))?;
    Ok(consumer)
}

/// `iot_partition_owned` for one partition: 1 while this host holds it, no gauge after.
pub(super) fn set_owned(partition: i32, owned: bool) {
    let gauges = &crate::metrics::global().partition_owned;
    let labels = crate::metrics::PartitionLabels { partition };
    if owned {
        gauges.get_or_create(&labels).set(1);
    } else {
        gauges.remove(&labels);
    }
}
