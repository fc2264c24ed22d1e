//! RedisTimeSeries store.
//!
//! Guarantees: a batch's samples and its partition checkpoints are written in one
//! MULTI/EXEC transaction, so after a crash Redis holds either all of a batch or none of
//! it, and the checkpoint always matches the samples. Every write is idempotent (series use
//! duplicate policy LAST), so replaying a batch leaves the same stored values.
//!
//! Duties of the caller: announce each series in `Effects::new_series` before its first
//! sample (the engine does); write one partition's batches in order.
//!
//! Partitioning: keys are `<prefix><site>:<sensor>:<kind>`; checkpoints are
//! `<prefix>_checkpoint:<topic>:<partition>`; plugin builds that checkpoints refer to are
//! archived (written once, in the transaction of the first batch that uses them) at
//! `<prefix>_plugin:<sha256>`. Instances of one consumer group share Redis;
//! each writes only the sites of its own partitions.
//!
//! Errors: connection failures are retried with backoff until Redis is back (nothing is
//! lost: the batch is retried whole); a reply error (e.g. a server without TimeSeries) is
//! returned to the caller with what to do.

use std::time::Duration;

use anyhow::Context as _;
use redis::aio::ConnectionManager;

use super::Store;
use crate::engine::{Effects, PartitionCheckpoint, SeriesDef};

/// TS.MADD arguments per command: large enough to amortise the round trip, small enough to
/// keep Redis responsive to other clients.
const MADD_CHUNK: usize = 1000;

#[derive(Debug, Clone)]
pub struct RedisStoreConfig {
    pub url: String,
    pub key_prefix: String,
    /// Names the input topic in checkpoint keys.
    pub topic: String,
}

pub struct RedisStore {
    conn: ConnectionManager,
    config: RedisStoreConfig,
    /// Key of each series id; filled from `Effects::new_series`.
    keys: Vec<String>,
}

impl RedisStore {
    pub async fn connect(config: RedisStoreConfig) -> anyhow::Result<RedisStore> {
        let client = redis::Client::open(config.url.as_str())
            .with_context(|| format!("REDIS_URL {:?} is not a valid Redis URL", config.url))?;
        let conn = retry("connect to Redis", || {
            ConnectionManager::new(client.clone())
        })
        .await;
        let mut store = RedisStore {
            conn,
            config,
            keys: Vec::new(),
        };
        store.check_timeseries().await?;
        Ok(store)
    }

    async fn check_timeseries(&mut self) -> anyhow::Result<()> {
        let probe = format!("{}_probe", self.config.key_prefix);
        let reply: redis::RedisResult<redis::Value> = redis::cmd("TS.INFO")
            .arg(&probe)
            .query_async(&mut self.conn)
            .await;
        match reply {
            Err(e) if e.to_string().to_lowercase().contains("unknown command") => anyhow::bail!(
                "Redis at {} has no TimeSeries module (TS.INFO is an unknown command): \
                 start Redis Stack with scripts/stack up, or point REDIS_URL at a server with RedisTimeSeries",
                self.config.url
            ),
            _ => Ok(()),
        }
    }

    pub fn checkpoint_key(&self, partition: i32) -> String {
        format!(
            "{}_checkpoint:{}:{partition}",
            self.config.key_prefix, self.config.topic
        )
    }

    pub fn plugin_build_key(&self, hash: &str) -> String {
        format!("{}_plugin:{hash}", self.config.key_prefix)
    }

    async fn create_series(&mut self, defs: &[SeriesDef]) -> anyhow::Result<()> {
        if defs.is_empty() {
            return Ok(());
        }
        // TS.CREATE fails on an existing key; TS.ALTER then makes sure its policy and labels
        // are ours (a user's Redis may hold a series made by hand).
        let mut pipe = redis::pipe();
        for def in defs {
            let labels = labels(def);
            pipe.cmd("TS.CREATE")
                .arg(&def.key)
                .arg("DUPLICATE_POLICY")
                .arg("LAST")
                .arg("LABELS")
                .arg(&labels)
                .ignore();
            pipe.cmd("TS.ALTER")
                .arg(&def.key)
                .arg("DUPLICATE_POLICY")
                .arg("LAST")
                .arg("LABELS")
                .arg(&labels)
                .ignore();
        }
        // Errors of TS.CREATE on existing keys are expected; redis-rs reports the first error
        // of a pipeline, so run it and then check that every key exists with our policy.
        let _: redis::RedisResult<()> = pipe.query_async(&mut self.conn).await;
        let mut check = redis::pipe();
        for def in defs {
            check.cmd("EXISTS").arg(&def.key);
        }
        let exists: Vec<i64> = check
            .query_async(&mut self.conn)
            .await
            .context("checking created series")?;
        if let Some(missing) = defs.iter().zip(&exists).find(|(_, &e)| e == 0) {
            anyhow::bail!(
                "Redis did not create series {}: is the TimeSeries module loaded?",
                missing.0.key
            );
        }
        Ok(())
    }

    fn remember(&mut self, defs: &[SeriesDef]) {
        for def in defs {
            let id = def.id as usize;
            if self.keys.len() <= id {
                self.keys.resize(id + 1, String::new());
            }
            self.keys[id] = def.key.clone();
        }
    }

    fn transaction(&self, effects: &Effects) -> anyhow::Result<redis::Pipeline> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        for chunk in effects.samples.chunks(MADD_CHUNK) {
            let cmd = pipe.cmd("TS.MADD");
            for s in chunk {
                cmd.arg(&self.keys[s.series as usize])
                    .arg(s.ts_ms)
                    .arg(s.value);
            }
        }
        for (hash, bytes) in &effects.plugin_builds {
            pipe.cmd("SET")
                .arg(self.plugin_build_key(hash))
                .arg(&bytes[..])
                .arg("NX")
                .ignore();
        }
        for checkpoint in &effects.checkpoints {
            let json = serde_json::to_string(checkpoint).context("serialising a checkpoint")?;
            pipe.cmd("SET")
                .arg(self.checkpoint_key(checkpoint.partition))
                .arg(json)
                .ignore();
        }
        Ok(pipe)
    }
}

impl Store for RedisStore {
    async fn load_checkpoint(
        &mut self,
        partition: i32,
    ) -> anyhow::Result<Option<PartitionCheckpoint>> {
        let key = self.checkpoint_key(partition);
        let json: Option<String> = retry_query(
            "read a checkpoint",
            &mut self.conn,
            redis::cmd("GET").arg(&key),
        )
        .await?;
        json.map(|j| {
            serde_json::from_str(&j).with_context(|| {
                format!("checkpoint {key} is not readable; delete it to start that partition over")
            })
        })
        .transpose()
    }

    async fn load_plugin_build(&mut self, hash: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let key = self.plugin_build_key(hash);
        retry_query(
            "read an archived plugin build",
            &mut self.conn,
            redis::cmd("GET").arg(&key),
        )
        .await
    }

    async fn commit(&mut self, effects: &Effects) -> anyhow::Result<()> {
        self.remember(&effects.new_series);
        let mut delay = Duration::from_millis(100);
        loop {
            let attempt = async {
                self.create_series(&effects.new_series).await?;
                let pipe = self.transaction(effects)?;
                let mut conn = self.conn.clone();
                // TS.MADD reports a failed sample inside its reply, not as a command error.
                let replies: Vec<redis::Value> = pipe.query_async(&mut conn).await?;
                check_madd_replies(&replies)?;
                anyhow::Ok(())
            };
            match attempt.await {
                Ok(()) => return Ok(()),
                Err(e) if is_transient(&e) => {
                    tracing::warn!("Redis write failed, retrying in {delay:?}: {e:#}");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e.context("writing a batch to RedisTimeSeries")),
            }
        }
    }
}

fn check_madd_replies(replies: &[redis::Value]) -> anyhow::Result<()> {
    for reply in replies {
        let samples = match reply {
            redis::Value::Array(items) => items.as_slice(),
            other => std::slice::from_ref(other),
        };
        if let Some(redis::Value::ServerError(e)) = samples
            .iter()
            .find(|v| matches!(v, redis::Value::ServerError(_)))
        {
            anyhow::bail!(
                "RedisTimeSeries refused a sample: {e:?}; was a series deleted while the host ran?"
            );
        }
    }
    Ok(())
}

fn labels(def: &SeriesDef) -> Vec<&str> {
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

fn is_transient(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause.downcast_ref::<redis::RedisError>().is_some_and(|r| {
            r.is_io_error()
                || r.is_connection_dropped()
                || r.is_connection_refusal()
                || r.is_timeout()
        })
    })
}

async fn retry<T, E: std::fmt::Display, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut delay = Duration::from_millis(100);
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) => {
                tracing::warn!("cannot {what} yet, retrying in {delay:?}: {e}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn retry_query<T: redis::FromRedisValue>(
    what: &str,
    conn: &mut ConnectionManager,
    cmd: &redis::Cmd,
) -> anyhow::Result<T> {
    let mut delay = Duration::from_millis(100);
    loop {
        match cmd.query_async::<T>(conn).await {
            Ok(v) => return Ok(v),
            Err(e)
                if e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.is_timeout() =>
            {
                tracing::warn!("cannot {what} yet, retrying in {delay:?}: {e}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(anyhow::Error::new(e).context(format!("cannot {what}"))),
        }
    }
}
