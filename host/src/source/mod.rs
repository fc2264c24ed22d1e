//! Where input records come from. The engine's runner takes any [`Source`]: the real one is
//! [`KafkaSource`]; tests may drive the engine with [`VecSource`], a finite list.

mod kafka;

pub use kafka::{KafkaSource, KafkaSourceConfig};

use std::future::Future;

use crate::engine::SourceRecord;

/// What a source has for the runner.
#[derive(Debug)]
pub enum SourceEvent {
    /// The next records, in partition order.
    Records(Vec<SourceRecord>),
    /// Partitions taken away by a rebalance: forget their in-memory state.
    Revoked(Vec<i32>),
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
}

/// A finite source over records held in memory, handed out in batches.
pub struct VecSource {
    records: std::collections::VecDeque<SourceRecord>,
    pub committed: Vec<(i32, i64)>,
}

impl VecSource {
    pub fn new(records: impl IntoIterator<Item = SourceRecord>) -> VecSource {
        VecSource {
            records: records.into_iter().collect(),
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
}
