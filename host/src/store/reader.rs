//! Reading RedisTimeSeries on one Redis or a Redis Cluster, for the live page and the
//! tests: a command on one key goes to the shard that serves the key; a query by labels
//! (`TS.QUERYINDEX`, `TS.MRANGE`, `TS.MREVRANGE`) must ask every shard, because each
//! shard's index holds only its own series, and the replies are merged.

use anyhow::Context as _;
use iot_protocol::series::KeyLayout;
use iot_protocol::SeriesName;
use redis::cluster_routing::{MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo};

use super::detect_key_layout;
use super::redis_common::{CONNECTION_TIMEOUT, READ_RESPONSE_TIMEOUT};

/// A connection for reading, to one Redis or to a cluster.
#[derive(Clone)]
pub enum RedisReader {
    Single(redis::aio::ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl RedisReader {
    /// Connects to what `url` points at: a cluster node gives a cluster connection.
    pub async fn connect(url: &str) -> anyhow::Result<RedisReader> {
        match detect_key_layout(url).await? {
            KeyLayout::Single => {
                let client = redis::Client::open(url)
                    .with_context(|| format!("REDIS_URL {url:?} is not a valid Redis URL"))?;
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_response_timeout(Some(READ_RESPONSE_TIMEOUT))
                    .set_connection_timeout(Some(CONNECTION_TIMEOUT));
                let conn = redis::aio::ConnectionManager::new_with_config(client, config)
                    .await
                    .with_context(|| format!("cannot reach Redis at {url}"))?;
                Ok(RedisReader::Single(conn))
            }
            KeyLayout::Cluster => {
                let client = redis::cluster::ClusterClientBuilder::new(vec![url])
                    .connection_timeout(CONNECTION_TIMEOUT)
                    .response_timeout(READ_RESPONSE_TIMEOUT)
                    .build()
                    .with_context(|| format!("REDIS_URL {url:?} is not a valid Redis URL"))?;
                let conn = client
                    .get_async_connection()
                    .await
                    .with_context(|| format!("cannot reach the Redis Cluster at {url}"))?;
                Ok(RedisReader::Cluster(conn))
            }
        }
    }

    pub fn layout(&self) -> KeyLayout {
        match self {
            RedisReader::Single(_) => KeyLayout::Single,
            RedisReader::Cluster(_) => KeyLayout::Cluster,
        }
    }

    /// The key of a series in this Redis's layout.
    pub fn series_key(&self, prefix: &str, name: &SeriesName) -> String {
        name.key_in(prefix, self.layout())
    }

    /// A query by labels on every shard, the arrays of their replies concatenated (on one
    /// Redis, just the reply).
    pub async fn query_every_shard<T: redis::FromRedisValue>(
        &mut self,
        cmd: redis::Cmd,
    ) -> redis::RedisResult<Vec<T>> {
        match self {
            RedisReader::Single(conn) => cmd.query_async(conn).await,
            RedisReader::Cluster(conn) => {
                let routing = RoutingInfo::MultiNode((
                    MultipleNodeRoutingInfo::AllMasters,
                    Some(ResponsePolicy::CombineArrays),
                ));
                let merged = conn.route_command(cmd, routing).await?;
                Ok(redis::from_redis_value(merged)?)
            }
        }
    }
}

impl RedisReader {
    /// `INFO <section>` of every shard (one text per master).
    pub async fn info_every_shard(&mut self, section: &str) -> redis::RedisResult<Vec<String>> {
        let mut cmd = redis::cmd("INFO");
        cmd.arg(section);
        match self {
            RedisReader::Single(conn) => Ok(vec![cmd.query_async(conn).await?]),
            RedisReader::Cluster(conn) => {
                let routing = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
                match conn.route_command(cmd, routing).await? {
                    redis::Value::Map(per_node) => per_node
                        .into_iter()
                        .map(|(_, info)| Ok(redis::from_redis_value(info)?))
                        .collect(),
                    other => Ok(vec![redis::from_redis_value(other)?]),
                }
            }
        }
    }
}

/// Commands on keys (and pipelines of one slot) go where the key is.
impl redis::aio::ConnectionLike for RedisReader {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            RedisReader::Single(conn) => conn.req_packed_command(cmd),
            RedisReader::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            RedisReader::Single(conn) => conn.req_packed_commands(cmd, offset, count),
            RedisReader::Cluster(conn) => conn.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        0
    }
}
