//! What the single-Redis and the cluster store share: which errors waiting cures, retrying
//! until Redis is back, the settings every series is created with, and how a partition is
//! claimed.

use std::time::Duration;

use crate::engine::SeriesDef;
use crate::outage::REDIS as OUTAGE;

/// Longest wait between two retries while Redis is away.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(2);
/// First wait after a failed attempt; doubled up to [`MAX_RETRY_DELAY`].
pub const FIRST_RETRY_DELAY: Duration = Duration::from_millis(100);

/// How long one reply may take. A batch's transaction of thousands of samples and its
/// checkpoints can take a second on a busy machine; the client's default (500 ms) would
/// time it out and retry it forever. It does not bound a Redis that accepts connections
/// but never answers (that is retried, and logged as an outage).
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long connecting may take before the attempt counts as failed and is retried.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a reader (the live page, the tests) waits for one reply. The client's default
/// (500 ms) fails a `TS.RANGE` of a long series on a machine whose cores are busy, which is
/// an error to the page and a failed test, not a slow answer. A reader does not retry, so
/// this is also how long a page request can hang on a Redis that never answers.
pub const READ_RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// The labels of a series (SPEC §5).
pub fn labels(def: &SeriesDef) -> Vec<&str> {
    vec![
        "site",
        &def.name.site,
        "sensor",
        &def.name.sensor,
        "kind",
        def.name.kind.as_str(),
        "unit",
        &def.unit,
    ]
}

/// RETENTION of a series in ms: only raw series expire; every other kind keeps its
/// samples (0).
pub fn retention_ms(def: &SeriesDef, raw_retention: Option<Duration>) -> u64 {
    match (def.name.kind, raw_retention) {
        (iot_protocol::Kind::Raw, Some(retention)) => retention.as_millis() as u64,
        _ => 0,
    }
}

pub fn is_transient(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<redis::RedisError>()
            .is_some_and(is_transient_redis)
    })
}

/// Errors that waiting cures: no connection, no answer in time, or a server that is
/// starting (loading its data) or failing over, or a cluster whose slots are moving.
pub fn is_transient_redis(r: &redis::RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    r.is_io_error()
        || r.is_connection_dropped()
        || r.is_connection_refusal()
        || r.is_timeout()
        || r.is_cluster_error()
        || matches!(
            r.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ReadOnly
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::Moved
                    | ServerErrorKind::Ask
            )
        )
}

/// Calls `f` until it succeeds, logging the outage once.
pub async fn retry<T, E: std::fmt::Display, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut delay = FIRST_RETRY_DELAY;
    loop {
        match f().await {
            Ok(v) => {
                OUTAGE.succeeded();
                return v;
            }
            Err(e) => {
                OUTAGE.failed(&format_args!("cannot {what}: {e}"));
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RETRY_DELAY);
            }
        }
    }
}

/// Runs `cmd` until it succeeds or fails with an error waiting does not cure.
pub async fn retry_query<T: redis::FromRedisValue, C: redis::aio::ConnectionLike>(
    what: &str,
    conn: &mut C,
    cmd: &redis::Cmd,
) -> anyhow::Result<T> {
    let mut delay = FIRST_RETRY_DELAY;
    loop {
        match cmd.query_async::<T>(conn).await {
            Ok(v) => {
                OUTAGE.succeeded();
                return Ok(v);
            }
            Err(e) if is_transient_redis(&e) => {
                OUTAGE.failed(&format_args!("cannot {what}: {e}"));
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RETRY_DELAY);
            }
            Err(e) => return Err(anyhow::Error::new(e).context(format!("cannot {what}"))),
        }
    }
}

/// Claims a partition: its owner epoch becomes larger than any before it, and at least the
/// claimer's clock in ms. The clock is what keeps fencing sound after Redis lost the owner
/// key (restarted without its last writes, a failover to a replica behind): a plain `INCR`
/// would hand out `1` again, an epoch an earlier owner may still believe is its own.
/// KEYS[1]: the partition's owner key. ARGV[1]: the claimer's clock, ms since the epoch.
/// Returns the new epoch as a string.
const CLAIM_SCRIPT: &str = r"
local held = tonumber(redis.call('GET', KEYS[1]) or '0')
local epoch = string.format('%.0f', math.max(held + 1, tonumber(ARGV[1])))
redis.call('SET', KEYS[1], epoch)
return epoch
";

/// The command that claims the partition whose owner key is `owner_key` (see
/// `CLAIM_SCRIPT`); its reply is the new owner epoch.
pub fn claim_command(owner_key: &str) -> redis::Cmd {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut claim = redis::cmd("EVAL");
    claim.arg(CLAIM_SCRIPT).arg(1).arg(owner_key).arg(now_ms);
    claim
}
