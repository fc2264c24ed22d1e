//! How far a host under test has got: the records its checkpoints say are durable.
//!
//! The one place tests read the host's checkpoints, so a change of checkpoint layout
//! changes one function ([`checkpointed_offset`], which reads the head field). Waits here keep checking that the host
//! (and the load, when there is one) still run, so a test that waits for progress fails
//! at once, naming the cause, instead of at its deadline.

use std::time::{Duration, Instant};

use iot_host::engine::checkpoint_format::{self, HEAD_FIELD};

use crate::fixture::{Sink, TestScope};
use crate::live_host::LiveHost;
use crate::load::Load;

/// How often a wait asks Redis again.
const POLL: Duration = Duration::from_millis(50);
/// How long one question to Redis may take before it counts as "Redis does not answer"
/// (during an outage test it may be down).
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// The checkpoints of one input topic under one test's key prefix.
pub struct Progress {
    redis: Asker,
    keys: Vec<String>,
}

/// How Progress reaches the scope's Redis: a new connection per question, so a question
/// during an outage fails at once instead of waiting on a reconnecting connection.
enum Asker {
    Single(redis::Client),
    Cluster(redis::cluster::ClusterClient),
}

impl Progress {
    pub fn new(scope: &TestScope, topic: &str, partitions: i32) -> Progress {
        let keys = (0..partitions)
            .map(|p| checkpoint_key(scope, topic, p))
            .collect();
        let redis = match scope.sink {
            Sink::Redis => Asker::Single(scope.redis()),
            Sink::RedisCluster => Asker::Cluster(
                redis::cluster::ClusterClient::new(vec![scope.services.redis_url.as_str()])
                    .expect("the cluster's URL is valid"),
            ),
        };
        Progress { redis, keys }
    }

    /// Records made durable over all partitions: the sum of the checkpointed next offsets
    /// (the topics tests use start at offset 0). `None` while Redis does not answer.
    pub async fn stored(&self) -> Option<i64> {
        let offsets = self.offsets().await?;
        Some(offsets.into_iter().flatten().sum())
    }

    /// Each partition's checkpointed next offset (`None`: no checkpoint yet). `None` while
    /// Redis does not answer.
    pub async fn offsets(&self) -> Option<Vec<Option<i64>>> {
        let ask = async {
            match &self.redis {
                Asker::Single(client) => {
                    let mut conn = client.get_multiplexed_async_connection().await.ok()?;
                    heads(&mut conn, &self.keys).await
                }
                Asker::Cluster(client) => {
                    let mut conn = client.get_async_connection().await.ok()?;
                    heads(&mut conn, &self.keys).await
                }
            }
        };
        tokio::time::timeout(ASK_TIMEOUT, ask).await.ok()?
    }

    /// Waits until the host has moved the checkpoint of every partition in `partitions`
    /// past where it was when called: it holds all of them in memory.
    pub async fn wait_until_each_moved(
        &self,
        host: &mut LiveHost,
        mut load: Option<&mut Load>,
        partitions: &[i32],
        deadline: Duration,
    ) {
        let until = Instant::now() + deadline;
        let start = loop {
            if let Some(offsets) = self.offsets().await {
                break offsets;
            }
            assert!(
                Instant::now() < until,
                "Redis did not answer within {deadline:?}"
            );
            tokio::time::sleep(POLL).await;
        };
        loop {
            if let Some(now) = self.offsets().await {
                if partitions
                    .iter()
                    .all(|&p| now[p as usize] > start[p as usize])
                {
                    return;
                }
            }
            host.assert_running();
            if let Some(load) = load.as_deref_mut() {
                load.assert_running().await;
            }
            assert!(
                Instant::now() < until,
                "the host did not move the checkpoints of partitions {partitions:?} within {deadline:?}; see {}",
                host.log.display()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until at least `at_least` records are durable. Fails at once if the host or
    /// the load stopped, and after `deadline` naming `what` it was waiting for.
    pub async fn wait_until(
        &self,
        host: &mut LiveHost,
        mut load: Option<&mut Load>,
        at_least: i64,
        deadline: Duration,
        what: &str,
    ) {
        let until = Instant::now() + deadline;
        loop {
            if self.stored().await.is_some_and(|n| n >= at_least) {
                return;
            }
            host.assert_running();
            if let Some(load) = load.as_deref_mut() {
                load.assert_running().await;
            }
            assert!(
                Instant::now() < until,
                "the host did not store {at_least} records ({what}) within {deadline:?}; \
                 it stored {:?}; see {}",
                self.stored().await,
                host.log.display()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until `more` records beyond what is durable now are durable; "now" is the
    /// first answer Redis gives, should it be down when the wait starts.
    pub async fn wait_for_more(
        &self,
        host: &mut LiveHost,
        load: Option<&mut Load>,
        more: i64,
        deadline: Duration,
        what: &str,
    ) {
        let until = Instant::now() + deadline;
        let now = loop {
            if let Some(now) = self.stored().await {
                break now;
            }
            host.assert_running();
            assert!(
                Instant::now() < until,
                "Redis did not answer within {deadline:?} ({what})"
            );
            tokio::time::sleep(POLL).await;
        };
        let left = until.saturating_duration_since(Instant::now());
        self.wait_until(host, load, now + more, left, what).await;
    }
}

/// Where the host keeps the checkpoint of `topic`'s `partition`.
pub fn checkpoint_key(scope: &TestScope, topic: &str, partition: i32) -> String {
    scope.checkpoint_key(topic, partition)
}

/// Each checkpoint's next offset (`None`: none yet); `None` if Redis does not answer.
async fn heads<C: redis::aio::ConnectionLike>(
    conn: &mut C,
    keys: &[String],
) -> Option<Vec<Option<i64>>> {
    let mut offsets = Vec::with_capacity(keys.len());
    for key in keys {
        let bytes: Option<Vec<u8>> = redis::cmd("HGET")
            .arg(key)
            .arg(HEAD_FIELD)
            .query_async(conn)
            .await
            .ok()?;
        offsets.push(bytes.map(|b| checkpointed_offset(key, &b)));
    }
    Some(offsets)
}

/// The next offset a stored checkpoint's head names: everything before it is durable.
fn checkpointed_offset(key: &str, head: &[u8]) -> i64 {
    checkpoint_format::decode_next_offset(head)
        .unwrap_or_else(|e| panic!("{key} has a head that is not a checkpoint's: {e:#}"))
}
