//! The stage's output side: one transactional producer per assigned partition set, and
//! the transaction that makes produced records and consumed offsets visible together.
//!
//! Guarantees: a transaction commits the records produced since it began and the next
//! offsets of the input partitions they came from, or neither (`commit`, `abort`). The
//! producer's `transactional.id` names the partition set, so a stage restarted on the same
//! set, or a member taking it over, fences the one before it.
//!
//! Errors: a commit the broker says needs an abort is aborted and its records read again
//! (`Stage::rewind`); any other failure ends the stage with `RepartitionError::Transaction`.

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use sha2::{Digest, Sha256};

use super::Stage;
use crate::repartition::transform::Transformed;
use crate::repartition::RepartitionError;

/// How long a transaction call (init, offsets, commit, abort) may wait for the broker.
pub(super) const TRANSACTION_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The open transaction: when it began and how many records it holds (it ends when either
/// passes its bound, see `transaction_due`).
pub(super) struct Transaction {
    pub(super) started: Instant,
    pub(super) records: usize,
}

impl Stage<'_> {
    /// A producer whose `transactional.id` names the assigned partition set: a stage
    /// restarted on the same set (or a member taking it over) fences the one before it
    /// and aborts its open transaction at once.
    pub(super) fn transactional_producer(&self) -> Result<BaseProducer, RepartitionError> {
        let id = self.producer_id.clone();
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &self.config.kafka)
            .set("transactional.id", &id)
            .set("enable.idempotence", "true")
            .set(
                "transaction.timeout.ms",
                self.config.transaction_timeout.as_millis().to_string(),
            )
            .set("linger.ms", "5")
            .set("retry.backoff.ms", "5")
            .create()
            .map_err(|source| RepartitionError::Client {
                what: "transactional producer",
                source,
            })?;
        producer
            .init_transactions(TRANSACTION_CALL_TIMEOUT)
            .map_err(|source| RepartitionError::Transaction {
                what: "initialise the transactions of",
                id: id.clone(),
                source,
            })?;
        tracing::info!(transactional_id = %id, "repartition producer ready (earlier holders of this id are fenced)");
        Ok(producer)
    }

    pub(super) fn begin(&mut self) -> Result<(), RepartitionError> {
        if self.transaction.is_some() {
            return Ok(());
        }
        let producer = self
            .producer
            .as_ref()
            .expect("assigned partitions have a producer");
        producer
            .begin_transaction()
            .map_err(|source| RepartitionError::Transaction {
                what: "begin a transaction of",
                id: self.producer_id.clone(),
                source,
            })?;
        self.transaction = Some(Transaction {
            started: Instant::now(),
            records: 0,
        });
        Ok(())
    }

    pub(super) fn produce(&mut self, out: &Transformed) -> Result<(), RepartitionError> {
        let producer = self.producer.as_ref().expect("in a transaction");
        let (topic, key, value) = match out {
            Transformed::Reading { site, value, .. } => {
                self.counts.readings += 1;
                (&self.config.output_topic, Some(site.as_str()), value)
            }
            Transformed::DeadLetter { key, value } => {
                self.counts.dead_letters += 1;
                (&self.config.dead_letter_topic, key.as_deref(), value)
            }
        };
        let mut record = BaseRecord::<str, str>::to(topic).payload(value.as_str());
        if let Some(key) = key {
            record = record.key(key);
        }
        loop {
            match producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(10));
                }
                Err((source, _)) => {
                    return Err(RepartitionError::Client {
                        what: "producer",
                        source,
                    })
                }
            }
        }
    }

    pub(super) fn transaction_due(&self) -> bool {
        self.transaction.as_ref().is_some_and(|t| {
            t.records >= self.config.max_records_per_transaction
                || t.started.elapsed() >= self.config.commit_interval
        })
    }

    /// Commits the open transaction: the produced records and the consumed offsets become
    /// visible together, or neither does.
    pub(super) fn commit(&mut self) -> Result<(), RepartitionError> {
        let Some(transaction) = self.transaction.take() else {
            return Ok(());
        };
        let producer = self.producer.as_ref().expect("in a transaction");
        let mut offsets = TopicPartitionList::new();
        for (&(topic, partition), &next) in &self.offsets {
            offsets
                .add_partition_offset(
                    &self.config.inputs[topic].name,
                    partition,
                    Offset::Offset(next),
                )
                .expect("a valid offset");
        }
        let group = self
            .consumer
            .group_metadata()
            .ok_or(RepartitionError::NoGroupMetadata)?;
        let asked = Instant::now();
        let result = producer
            .send_offsets_to_transaction(&offsets, &group, TRANSACTION_CALL_TIMEOUT)
            .and_then(|()| {
                wait_for_acknowledgements(producer);
                producer.commit_transaction(TRANSACTION_CALL_TIMEOUT)
            });
        tracing::debug!(
            records = transaction.records,
            commit_ms = asked.elapsed().as_millis() as u64,
            "transaction committed"
        );
        match result {
            Ok(()) => {
                self.offsets.clear();
                self.counts.transactions += 1;
                Ok(())
            }
            Err(KafkaError::Transaction(e)) if e.txn_requires_abort() => {
                tracing::warn!(
                    records = transaction.records,
                    "transaction failed ({e}); aborting it and reading its records again"
                );
                self.transaction = Some(transaction);
                self.abort("a commit failed")?;
                self.rewind()
            }
            Err(source) => Err(RepartitionError::Transaction {
                what: "commit a transaction of",
                id: self.producer_id.clone(),
                source,
            }),
        }
    }

    /// Aborts the open transaction, if any: none of its records becomes visible.
    pub(super) fn abort(&mut self, why: &str) -> Result<(), RepartitionError> {
        let Some(transaction) = self.transaction.take() else {
            return Ok(());
        };
        self.offsets.clear();
        self.counts.aborted += 1;
        tracing::info!(
            records = transaction.records,
            "repartition transaction aborted: {why}"
        );
        let Some(producer) = self.producer.as_ref() else {
            return Ok(());
        };
        // Like a commit, an abort waits for the records in flight, whose delivery reports
        // only this thread serves (measured: without this the abort failed at once with
        // "Failed to flush all outstanding messages").
        wait_for_acknowledgements(producer);
        producer
            .abort_transaction(TRANSACTION_CALL_TIMEOUT)
            .map_err(|source| RepartitionError::Transaction {
                what: "abort a transaction of",
                id: self.producer_id.clone(),
                source,
            })
    }
}

/// Serves delivery reports until every produced record is acknowledged. `commit_transaction`
/// would do it too, but in steps of 100 ms (rdkafka's flush polls that long at a time):
/// measured, every commit took exactly 100 ms longer.
fn wait_for_acknowledgements(producer: &BaseProducer) {
    let deadline = Instant::now() + TRANSACTION_CALL_TIMEOUT;
    while producer.in_flight_count() > 0 && Instant::now() < deadline {
        producer.poll(Duration::from_millis(1));
    }
}

/// `<prefix>-<hash of the sorted partition set>`: stable for a partition set, different
/// for any two disjoint sets.
pub(in crate::repartition) fn transactional_id(prefix: &str, assigned: &[(String, i32)]) -> String {
    let mut sorted: Vec<String> = assigned.iter().map(|(t, p)| format!("{t}:{p}")).collect();
    sorted.sort();
    let digest = Sha256::digest(sorted.join(",").as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}-{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_transactional_id_depends_only_on_the_partition_set() {
        let a = [("course".to_owned(), 1), ("course".to_owned(), 0)];
        let b = [("course".to_owned(), 0), ("course".to_owned(), 1)];
        let c = [("course".to_owned(), 0)];
        assert_eq!(transactional_id("p", &a), transactional_id("p", &b));
        assert_ne!(transactional_id("p", &a), transactional_id("p", &c));
        assert!(transactional_id("iot", &c).starts_with("iot-"));
    }
}
