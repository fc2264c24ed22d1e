//! The store `main` wires in: one Redis or a Redis Cluster, whichever `REDIS_URL` points at
//! (a cluster node answers `INFO cluster` with `cluster_enabled:1`).

use anyhow::Context as _;
use iot_protocol::series::KeyLayout;

use super::redis_common::retry;
use super::{RedisClusterStore, RedisStore, RedisStoreConfig, Store};
use crate::engine::{Effects, PartitionCheckpoint, SeriesDef};

/// Asks the server at `url` whether it is a cluster node (waiting for it while it does not
/// answer): keys are laid out for it ([`KeyLayout::Cluster`]) or for one Redis.
pub async fn detect_key_layout(url: &str) -> anyhow::Result<KeyLayout> {
    let client = redis::Client::open(url)
        .with_context(|| format!("REDIS_URL {url:?} is not a valid Redis URL"))?;
    let info: String = retry("ask Redis whether it is a cluster", || async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("INFO")
            .arg("cluster")
            .query_async::<String>(&mut conn)
            .await
    })
    .await;
    let cluster = info.lines().any(|line| line.trim() == "cluster_enabled:1");
    Ok(if cluster {
        KeyLayout::Cluster
    } else {
        KeyLayout::Single
    })
}

pub enum RedisSink {
    Single(RedisStore),
    Cluster(RedisClusterStore),
}

impl RedisSink {
    /// Connects the store for `layout` (see [`detect_key_layout`]).
    pub async fn connect(config: RedisStoreConfig, layout: KeyLayout) -> anyhow::Result<RedisSink> {
        Ok(match layout {
            KeyLayout::Single => RedisSink::Single(RedisStore::connect(config).await?),
            KeyLayout::Cluster => RedisSink::Cluster(RedisClusterStore::connect(config).await?),
        })
    }
}

impl Store for RedisSink {
    async fn load_checkpoint(
        &mut self,
        partition: i32,
    ) -> anyhow::Result<Option<PartitionCheckpoint>> {
        match self {
            RedisSink::Single(s) => s.load_checkpoint(partition).await,
            RedisSink::Cluster(s) => s.load_checkpoint(partition).await,
        }
    }

    async fn load_plugin_build(&mut self, hash: &str) -> anyhow::Result<Option<Vec<u8>>> {
        match self {
            RedisSink::Single(s) => s.load_plugin_build(hash).await,
            RedisSink::Cluster(s) => s.load_plugin_build(hash).await,
        }
    }

    async fn commit(&mut self, effects: &Effects) -> anyhow::Result<()> {
        match self {
            RedisSink::Single(s) => s.commit(effects).await,
            RedisSink::Cluster(s) => s.commit(effects).await,
        }
    }

    fn keep_series(&mut self, defs: &[SeriesDef]) {
        match self {
            RedisSink::Single(s) => s.keep_series(defs),
            RedisSink::Cluster(s) => s.keep_series(defs),
        }
    }
}
