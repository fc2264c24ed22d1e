//! Where input records come from. The engine's runner takes any [`Source`]: the real one is
//! [`KafkaSource`]; tests may drive the engine with [`VecSource`], a finite list.

mod kafka;

pub(crate) use kafka::{is_end_of_partition, report_client_error};
pub use kafka::{
    KafkaSource, KafkaSourceConfig, DEFAULT_BATCH_LINGER, DEFAULT_SESSION_TIMEOUT,
    STATISTICS_INTERVAL_MS,
};

use std::future::Future;

use crate::engine::SourceRecord;

/// What a source has for the runner.
#[derive(Debug)]
pub enum SourceEvent {
    /// The next records, in partition order.
    Records(Vec<SourceRecord>),
    /// Partitions taken away by a rebalance: forget their in-memory state.
    Revoked(Vec<i32>),
    /// Partitions given to this instance by a rebalance: place each at its checkpoint
    /// ([`Source::rewind`]), which is authoritative, not the group's committed offset.
    Assigned(Vec<i32>),
    /// Every assigned partition is read to its end (for `--exit-when-idle`).
    CaughtUp,
    /// A finite source has nothing more.
    End,
}

pub trait Source: Send {
    /// Waits for at most `max` records (or another event). Must be cancel-safe: the runner
    /// drops a pending `next` to apply a hot swap, and no record may be lost by that.
    fn next(&mut self, max: usize) -> impl Future<Output = anyhow::Result<SourceEvent>> + Send;

    /// Records that everything below these offsets (partition, next offset) is durable.
    fn commit(
        &mut self,
        next_offsets: &[(i32, i64)],
    ) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Reads `partition` again from `offset`, dropping whatever of it was read ahead: the
    /// runner rebuilds a partition whose stored state is behind the consumer's position.
    fn rewind(
        &mut self,
        partition: i32,
        offset: i64,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// The consumer group's committed offset of `partition`, if it has one.
    fn committed_offset(
        &mut self,
        partition: i32,
    ) -> impl Future<Output = anyhow::Result<Option<i64>>> + Send;

    /// The offset of the first record the source still holds for `partition` (the start of
    /// the topic, as far as retention left it).
    fn first_offset(&mut self, partition: i32) -> impl Future<Output = anyhow::Result<i64>> + Send;

    /// Takes back a batch's records once the engine is done with them, so the next batches
    /// reuse their buffers instead of allocating two per record.
    fn recycle(&mut self, _records: Vec<SourceRecord>) {}

    /// Whether the partition is assigned to this reader now (a rebalance may have taken it
    /// while its last batches were being written). A source without a group holds all.
    fn holds(&self, _partition: i32) -> bool {
        true
    }
}

/// A finite source over records held in memory, handed out in batches.
pub struct VecSource {
    all: Vec<SourceRecord>,
    records: std::collections::VecDeque<SourceRecord>,
    pub committed: Vec<(i32, i64)>,
}

impl VecSource {
    pub fn new(records: impl IntoIterator<Item = SourceRecord>) -> VecSource {
        let all: Vec<SourceRecord> = records.into_iter().collect();
        VecSource {
            records: all.iter().cloned().collect(),
            all,
            committed: Vec::new(),
        }
    }
}

impl Source for VecSource {
    async fn next(&mut self, max: usize) -> anyhow::Result<SourceEvent> {
        if self.records.is_empty() {
            return Ok(SourceEvent::End);
        }
        let n = max.min(self.records.len());
        Ok(SourceEvent::Records(self.records.drain(..n).collect()))
    }

    async fn commit(&mut self, next_offsets: &[(i32, i64)]) -> anyhow::Result<()> {
        self.committed.extend_from_slice(next_offsets);
        Ok(())
    }

    /// Hands out the partition's records from `offset` again, after what is pending.
    async fn rewind(&mut self, partition: i32, offset: i64) -> anyhow::Result<()> {
        self.records.retain(|r| r.partition != partition);
        self.records.extend(
            self.all
                .iter()
                .filter(|r| r.partition == partition && r.offset >= offset)
                .cloned(),
        );
        Ok(())
    }

    async fn committed_offset(&mut self, partition: i32) -> anyhow::Result<Option<i64>> {
        Ok(self
            .committed
            .iter()
            .rev()
            .find(|(p, _)| *p == partition)
            .map(|(_, o)| *o))
    }

    async fn first_offset(&mut self, partition: i32) -> anyhow::Result<i64> {
        Ok(self
            .all
            .iter()
            .filter(|r| r.partition == partition)
            .map(|r| r.offset)
            .min()
            .unwrap_or(0))
    }
}
