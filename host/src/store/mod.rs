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

    /// The archived component of a plugin build, by its SHA-256 (see `Effects::plugin_builds`).
    fn load_plugin_build(
        &mut self,
        hash: &str,
    ) -> impl Future<Output = anyhow::Result<Option<Vec<u8>>>> + Send;

    /// Creates the batch's new series, then writes its samples and checkpoints atomically.
    fn commit(&mut self, effects: &Effects) -> impl Future<Output = anyhow::Result<()>> + Send;
}
