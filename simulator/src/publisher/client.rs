//! The publisher's Kafka client: the idempotent producer, the delivery reports it counts,
//! the topic it needs, and handing it one record.
//!
//! Guarantees: a record handed over with [`send`] is delivered in order within its
//! partition or counted as failed in [`Deliveries`] (librdkafka retries until
//! `MESSAGE_TIMEOUT`, also while the broker is away). Duties of the caller: poll nothing
//! itself (the producer has a thread of its own), and read [`Deliveries::failure`] between
//! steps. Errors name the broker and what to do (start the stack, or create the topic).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

use super::{CONNECT_TIMEOUT, MESSAGE_TIMEOUT, QUEUE_MAX_MESSAGES};

/// Delivery reports, counted by the producer's polling thread.
#[derive(Debug, Default)]
pub(super) struct Deliveries {
    pub(super) acknowledged: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

pub(super) struct Context(Arc<Deliveries>);

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::warn!(target: "librdkafka", "{fac}: {message}")
            }
            _ => tracing::debug!(target: "librdkafka", "{fac}: {message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", "{error}: {reason}");
    }
}

impl ProducerContext for Context {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.0.acknowledged.fetch_add(1, Ordering::Relaxed);
            }
            Err((error, _)) => {
                self.0.failed.fetch_add(1, Ordering::Relaxed);
                let mut first = self.0.first_error.lock().unwrap_or_else(|e| e.into_inner());
                first.get_or_insert_with(|| error.to_string());
            }
        }
    }
}

impl Deliveries {
    pub(super) fn failure(&self) -> Option<String> {
        let failed = self.failed.load(Ordering::Relaxed);
        (failed > 0).then(|| {
            let first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
            format!(
                "Kafka refused or did not acknowledge {failed} reading(s), the first with: {}",
                first.as_deref().unwrap_or("unknown error")
            )
        })
    }
}

pub(super) type Kafka = ThreadedProducer<Context>;

fn does_not_answer(bootstrap: &str, detail: impl std::fmt::Display) -> anyhow::Error {
    anyhow!(
        "Kafka at {bootstrap} does not answer ({detail}): start it with `scripts/stack up`, \
         or point --kafka / KAFKA_BOOTSTRAP at a running broker"
    )
}

pub(super) fn producer(bootstrap: &str, deliveries: Arc<Deliveries>) -> anyhow::Result<Kafka> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "iot-simulator")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "10")
        .set("batch.size", "1000000")
        .set("batch.num.messages", "10000")
        .set("compression.type", "lz4")
        .set(
            "queue.buffering.max.messages",
            QUEUE_MAX_MESSAGES.to_string(),
        )
        .set("queue.buffering.max.kbytes", "262144")
        .set(
            "message.timeout.ms",
            MESSAGE_TIMEOUT.as_millis().to_string(),
        )
        // The simulator creates a missing topic itself, with the right partition count.
        .set("allow.auto.create.topics", "false")
        .create_with_context(Context(deliveries))
        .with_context(|| format!("cannot configure a Kafka producer for {bootstrap}"))
}

/// Whether `topic` exists; an error if the broker does not answer.
pub(super) fn topic_exists(producer: &Kafka, bootstrap: &str, topic: &str) -> anyhow::Result<bool> {
    let metadata = producer
        .client()
        .fetch_metadata(Some(topic), CONNECT_TIMEOUT)
        .map_err(|e| does_not_answer(bootstrap, e))?;
    Ok(metadata
        .topics()
        .iter()
        .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty()))
}

pub(super) async fn create_topic(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .context("cannot configure a Kafka admin client")?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let results = admin
        .create_topics(
            [&new],
            &AdminOptions::new().operation_timeout(Some(CONNECT_TIMEOUT)),
        )
        .await
        .map_err(|e| does_not_answer(bootstrap, e))?;
    for result in results {
        match result {
            Ok(_) => tracing::info!("created topic {topic:?} with {partitions} partitions"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => bail!(
                "topic {name:?} does not exist at {bootstrap} and cannot be created ({code}): \
                 create it with kafka-topics.sh --create --topic {name} --partitions {partitions}"
            ),
        }
    }
    Ok(())
}

/// Why handing records over stopped before the run's end.
pub(super) enum Halt {
    /// Ctrl-C (or the caller's stop flag).
    Interrupted,
    /// Kafka refused a record, or failed to deliver earlier ones.
    Failed(String),
}

/// Hands one record to the producer. While its queue is full, waits for deliveries to make
/// room; while the broker (restarting) does not know the topic, waits as for any outage,
/// up to `MESSAGE_TIMEOUT`. Stops waiting when a delivery failed or `stopped()` holds.
pub(super) fn send(
    producer: &Kafka,
    mut record: BaseRecord<'_, str, str>,
    deliveries: &Deliveries,
    stopped: &impl Fn() -> bool,
) -> Result<(), Halt> {
    let mut unknown_since: Option<Instant> = None;
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                if let Some(failure) = deliveries.failure() {
                    return Err(Halt::Failed(failure));
                }
                if stopped() {
                    return Err(Halt::Interrupted);
                }
                producer.poll(Duration::from_millis(5));
            }
            Err((
                KafkaError::MessageProduction(
                    RDKafkaErrorCode::UnknownTopic
                    | RDKafkaErrorCode::UnknownPartition
                    | RDKafkaErrorCode::UnknownTopicOrPartition,
                ),
                back,
            )) if unknown_since.get_or_insert_with(Instant::now).elapsed() < MESSAGE_TIMEOUT => {
                // A broker that is restarting answers metadata without the topic for a
                // while.
                record = back;
                if stopped() {
                    return Err(Halt::Interrupted);
                }
                producer.poll(Duration::from_millis(100));
            }
            Err((e, _)) => {
                return Err(Halt::Failed(format!(
                    "cannot hand a reading to the Kafka producer: {e}"
                )))
            }
        }
    }
}
