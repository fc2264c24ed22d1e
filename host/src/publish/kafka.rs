//! Kafka publisher for the output topics.
//!
//! Guarantees: at least once. Each batch's records are acknowledged by the broker before
//! the batch's samples and checkpoint are committed to the store; a crash in between
//! replays the batch and publishes its records again. `aggregates` is keyed by
//! `<series key>@<ts>`, so a consumer treating it as an upsert log sees the same final
//! values; the idempotent producer keeps each partition's order through retries.
//!
//! Duties of the caller: await `publish` before committing the batch elsewhere.
//!
//! Partitioning: by record key (the default partitioner): aggregates by series and day,
//! late-rejected by site, dead-letter by the original key.
//!
//! Errors: delivery failures are retried by librdkafka until `message.timeout.ms`; a record
//! that still fails is retried by this publisher with backoff, so the host waits for Kafka
//! to come back rather than lose a record. An outage is logged once when it starts and once
//! when it ends (`crate::outage::KAFKA`), not once per retry.

use std::time::Duration;

use anyhow::Context as _;
use futures_util::future::join_all;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientContext;

use super::Publisher;
use crate::engine::{OutRecord, OutTopic};
use crate::outage::KAFKA as OUTAGE;

/// Routes the producer's client errors and statistics to the Kafka outage tracker.
pub struct PublisherContext;

impl ClientContext for PublisherContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        crate::outage::kafka_client_log(level, fac, message);
    }

    fn stats_raw(&self, statistics: &[u8]) {
        crate::outage::kafka_statistics(statistics);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        crate::source::report_client_error(&error, reason);
    }
}

#[derive(Debug, Clone)]
pub struct TopicNames {
    pub aggregates: String,
    pub late_rejected: String,
    pub dead_letter: String,
    pub plugin_errors: String,
    pub alarms: String,
}

impl Default for TopicNames {
    fn default() -> Self {
        TopicNames {
            aggregates: "aggregates".into(),
            late_rejected: "late-rejected".into(),
            dead_letter: "dead-letter".into(),
            plugin_errors: "plugin-errors".into(),
            alarms: "alarms".into(),
        }
    }
}

impl TopicNames {
    fn of(&self, topic: OutTopic) -> &str {
        match topic {
            OutTopic::Aggregates => &self.aggregates,
            OutTopic::LateRejected => &self.late_rejected,
            OutTopic::DeadLetter => &self.dead_letter,
            OutTopic::PluginErrors => &self.plugin_errors,
            OutTopic::Alarms => &self.alarms,
        }
    }
}

pub struct KafkaPublisher {
    producer: FutureProducer<PublisherContext>,
    topics: TopicNames,
}

impl KafkaPublisher {
    pub fn connect(bootstrap: &str, topics: TopicNames) -> anyhow::Result<KafkaPublisher> {
        let producer: FutureProducer<PublisherContext> = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("enable.idempotence", "true")
            // A batch's records are enqueued at once, so they go out together anyway;
            // lingering longer only delays the batch's acknowledgement.
            .set("linger.ms", "1")
            .set("compression.type", "lz4")
            .set("message.timeout.ms", "30000")
            .set(
                "statistics.interval.ms",
                crate::source::STATISTICS_INTERVAL_MS,
            )
            .create_with_context(PublisherContext)
            .with_context(|| format!("cannot create a Kafka producer for {bootstrap}"))?;
        Ok(KafkaPublisher { producer, topics })
    }

    /// Enqueues every record in order (so a key's later value is never overtaken by an
    /// earlier one), then waits for every acknowledgement. Returns the indexes that failed.
    async fn send_all(&self, records: &[&OutRecord]) -> Vec<usize> {
        let mut deliveries = Vec::with_capacity(records.len());
        for r in records {
            let mut record = FutureRecord::to(self.topics.of(r.topic)).payload(r.value.as_str());
            if let Some(key) = &r.key {
                record = record.key(key.as_str());
            }
            loop {
                match self.producer.send_result(record) {
                    Ok(delivery) => {
                        deliveries.push(delivery);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((e, back)) => {
                        record = back;
                        OUTAGE.failed(&format_args!("the producer refused a record: {e}"));
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        }
        join_all(deliveries)
            .await
            .into_iter()
            .enumerate()
            .filter_map(|(i, result)| match result {
                Ok(Ok(_)) => {
                    OUTAGE.succeeded();
                    None
                }
                Ok(Err((e, _))) => {
                    OUTAGE.failed(&format_args!("a delivery failed: {e}"));
                    Some(i)
                }
                Err(_) => Some(i),
            })
            .collect()
    }
}

impl Publisher for KafkaPublisher {
    async fn publish(&mut self, records: &[OutRecord]) -> anyhow::Result<()> {
        let mut pending: Vec<&OutRecord> = records.iter().collect();
        let mut delay = Duration::from_millis(200);
        while !pending.is_empty() {
            let failed = self.send_all(&pending).await;
            if failed.is_empty() {
                break;
            }
            pending = failed.into_iter().map(|i| pending[i]).collect();
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
        Ok(())
    }
}
