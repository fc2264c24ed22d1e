//! Output topics: `aggregates`, `late-rejected`, `dead-letter`, `plugin-errors`.
//! The real publisher is [`KafkaPublisher`]; the runner takes any [`Publisher`].

mod kafka;

pub use kafka::{KafkaPublisher, TopicNames};

use std::future::Future;

use crate::engine::OutRecord;

pub trait Publisher: Send {
    /// Returns once every record is acknowledged.
    fn publish(&mut self, records: &[OutRecord])
        -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// Keeps records in memory (for tests of the engine that do not test Kafka).
#[derive(Default)]
pub struct VecPublisher {
    pub records: Vec<OutRecord>,
}

impl Publisher for VecPublisher {
    async fn publish(&mut self, records: &[OutRecord]) -> anyhow::Result<()> {
        self.records.extend_from_slice(records);
        Ok(())
    }
}
