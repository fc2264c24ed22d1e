//! Where samples and checkpoints become durable. The runner takes any [`Store`]; the real
//! ones write RedisTimeSeries: [`RedisStore`] to one Redis, [`RedisClusterStore`] to a Redis
//! Cluster, and [`RedisSink`] is whichever of the two `REDIS_URL` points at.
//!
//! Layout: `redis_store/` (one Redis: a batch is one MULTI/EXEC; `checks.rs`, what a batch
//! checks first: the same server, nothing lost, its claims), `cluster_store.rs` and
//! `cluster_scripts.rs` (a cluster: per-site scripts, then the checkpoints), `redis_common.rs`
//! (retries, series settings), `sink.rs` (choosing one), `reader.rs` (reading either, for the live page and tests).

mod cluster_scripts;
mod cluster_store;
mod reader;
mod redis_common;
mod redis_store;
mod sink;

pub use cluster_store::RedisClusterStore;
pub use reader::RedisReader;
pub use redis_store::{RedisStore, RedisStoreConfig};
pub use sink::{detect_key_layout, RedisSink};

use std::future::Future;

use crate::engine::{Effects, PartitionCheckpoint, SeriesDef};

/// What a store reports that the runner must act on (other failures are plain errors).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Checkpoints this process wrote are gone, or older than written: the store lost data
    /// (a Redis restarted without persistence, restored from an old snapshot, or replaced).
    /// `lost` has, per partition: the next offset last written and the one found, if any.
    #[error(
        "Redis lost data this host had written: {} (restarted without persistence, restored \
         from an older snapshot, or replaced?); those partitions are rebuilt from what Redis \
         still holds, or from the start of the topic",
        describe_lost(lost)
    )]
    DataLost { lost: Vec<(i32, i64, Option<i64>)> },
    /// Another host claimed these partitions after this one did (the group gave them away,
    /// e.g. while this host was frozen past its session timeout): the batch was not
    /// written, and this host must not write them again until it is assigned them anew.
    #[error(
        "partitions {partitions:?} were taken over by another host (a newer owner epoch in \
         Redis): this host's batch for them was not written, and it leaves them until the \
         group assigns them to it again"
    )]
    Fenced { partitions: Vec<i32> },
    /// Redis no longer holds this host's claim of these partitions (their owner key is gone
    /// or older: Redis restarted without its last writes, or failed over to a replica that
    /// missed them): the batch was not written; the host claims them again and rebuilds
    /// them from what the store holds. Not a fence: no other host claimed them.
    #[error(
        "Redis no longer holds this host's claim of partitions {partitions:?} (restarted \
         without its last writes, or failed over to a replica behind?): the batch was not \
         written; the host claims them again and rebuilds them from their checkpoints"
    )]
    ClaimLost { partitions: Vec<i32> },
}

fn describe_lost(lost: &[(i32, i64, Option<i64>)]) -> String {
    lost.iter()
        .map(|(p, written, found)| match found {
            Some(found) => format!("partition {p} checkpoint at offset {found}, {written} written"),
            None => format!("partition {p} checkpoint gone ({written} written)"),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

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

    /// A batch is discarded unwritten (built on state the store lost, or on a partition
    /// taken over): the engine announces a series only once, so the store must still learn
    /// the series it announced, and create them before a later batch writes to them.
    fn keep_series(&mut self, defs: &[SeriesDef]);
}
