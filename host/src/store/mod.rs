//! Where samples and checkpoints become durable. The real store is [`RedisStore`]
//! (RedisTimeSeries); the runner takes any [`Store`].

mod redis_store;

pub use redis_store::{RedisStore, RedisStoreConfig};

use std::future::Future;

use crate::engine::{Effects, PartitionCheckpoint};

pub trait Store: Send {
    /// The checkpoint of a partition, if one was ever written.
    fn load_checkpoint(
        &mut self,
        partition: i32,
    ) -> impl Future<Output = anyhow::Result<Option<PartitionCheckpoint>>> + Send;

    /// Creates the batch's new series, then writes its samples and checkpoints atomically.
    fn commit(&mut self, effects: &Effects) -> impl Future<Output = anyhow::Result<()>> + Send;
}
