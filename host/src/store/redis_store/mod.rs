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
//! Partitioning: keys are `<prefix><site>:<sensor>:<kind>`; checkpoints are hashes at
//! `<prefix>_checkpoint:<topic>:<partition>` (a head field and one field per site, binary:
//! `engine/checkpoint_format.rs`; a batch writes only the sites that changed); plugin builds that checkpoints refer to are
//! archived (written once, in the transaction of the first batch that uses them) at
//! `<prefix>_plugin:<sha256>`. Instances of one consumer group share Redis;
//! each writes only the sites of its own partitions.
//!
//! Fencing (the checks are in `checks.rs`): taking a partition over (reading its checkpoint) claims it: `claim_command` on
//! `<prefix>_owner:<topic>:<partition>` gives this store the partition's new owner epoch
//! (larger than every earlier one). Every batch WATCHes the owner keys of its partitions
//! and checks they still hold this store's epochs before its MULTI/EXEC:
//! - a newer claim (another host took the partition over, e.g. while this one was frozen
//!   past its session timeout) fails the batch as [`StoreError::Fenced`], nothing written;
//! - an epoch gone or older is a claim Redis lost (restarted without its last writes), not
//!   a fence: [`StoreError::ClaimLost`], nothing written, and the runner claims again;
//! - a claim landing between the check and the EXEC aborts the EXEC (WATCH); the owners are
//!   then read again to tell it from an abort with every claim intact (`SpuriousAbort`,
//!   retried).
//!
//! Not covered: a reconnect between the check and the EXEC drops the WATCH, so that one
//! batch is written unchecked.
//!
//! Retention: `raw` series keep `raw_retention` (RETENTION, relative to each series' newest
//! sample), every other series keeps everything.
//!
//! Errors: connection failures, timeouts and a server still loading its data are retried
//! with backoff until Redis is back (nothing is lost: the batch is retried whole), logged
//! once per outage (see `crate::outage`). When Redis comes back, the store first checks
//! that the checkpoints it wrote are still there: a Redis restarted without persistence,
//! or replaced, is reported as [`StoreError::DataLost`] so the runner rebuilds those
//! partitions instead of carrying on as if nothing happened. A reply error (e.g. a server
//! without TimeSeries) is returned to the caller with what to do.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context as _;
use iot_protocol::series::KeyLayout;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

mod checks;

use checks::{Checks, SpuriousAbort};

use super::redis_common::{
    claim_command, is_transient, labels, retention_ms, retry, retry_query, CONNECTION_TIMEOUT,
    MAX_RETRY_DELAY, RESPONSE_TIMEOUT,
};
use super::{Store, StoreError};
use crate::engine::checkpoint_format::{
    self, site_field, CheckpointWrite, StoredFields, HEAD_FIELD,
};
use crate::engine::{Effects, PartitionCheckpoint, SeriesDef};
use crate::outage::REDIS as OUTAGE;
use crate::profile::Stage;

/// TS.MADD arguments per command: large enough to amortise the round trip, small enough to
/// keep Redis responsive to other clients.
const MADD_CHUNK: usize = 1000;
/// Room for a sample's timestamp and value as text (an `i64` is at most 20 characters, an
/// `f64` from `ryu` at most 24).
const MAX_NUMBER_TEXT_BYTES: usize = 44;

#[derive(Debug, Clone)]
pub struct RedisStoreConfig {
    pub url: String,
    pub key_prefix: String,
    /// Names the input topic in checkpoint keys.
    pub topic: String,
    /// Retention of `raw` series (`None`: forever); the caller checks it against the
    /// lateness (`HostConfig::checked_raw_retention`).
    pub raw_retention: Option<Duration>,
}

pub struct RedisStore {
    conn: ConnectionManager,
    config: RedisStoreConfig,
    /// Every series announced so far, by id; filled from `Effects::new_series`.
    series: Vec<Option<SeriesDef>>,
    /// The next offset of each partition's last checkpoint written: after an outage these
    /// must still be in Redis, or Redis lost data.
    written: HashMap<i32, i64>,
    /// The `run_id` of the Redis server the last batch went to. Another one (a restart, a
    /// failover, another server) may have lost data: the store checks before writing.
    server_run_id: Option<String>,
    /// Redis lost data: create every known series again before the next write.
    recreate_series: bool,
    /// Series of batches that were not written (discarded or fenced): created before the
    /// next batch that is.
    to_create: Vec<SeriesDef>,
    /// The owner epoch this store claimed for each partition it took over.
    epochs: HashMap<i32, i64>,
}

impl RedisStore {
    pub async fn connect(config: RedisStoreConfig) -> anyhow::Result<RedisStore> {
        let client = redis::Client::open(config.url.as_str())
            .with_context(|| format!("REDIS_URL {:?} is not a valid Redis URL", config.url))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(CONNECTION_TIMEOUT))
            .set_max_delay(MAX_RETRY_DELAY);
        let conn = retry("connect to Redis", || {
            ConnectionManager::new_with_config(client.clone(), manager_config.clone())
        })
        .await;
        let mut store = RedisStore {
            conn,
            config,
            series: Vec::new(),
            written: HashMap::new(),
            server_run_id: None,
            recreate_series: false,
            to_create: Vec::new(),
            epochs: HashMap::new(),
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
        KeyLayout::Single.checkpoint_key(&self.config.key_prefix, &self.config.topic, partition)
    }

    /// Where a partition's owner epoch is (see "Fencing" above).
    pub fn owner_key(&self, partition: i32) -> String {
        KeyLayout::Single.owner_key(&self.config.key_prefix, &self.config.topic, partition)
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
            let retention_ms = retention_ms(def, self.config.raw_retention);
            for command in ["TS.CREATE", "TS.ALTER"] {
                pipe.cmd(command)
                    .arg(&def.key)
                    .arg("RETENTION")
                    .arg(retention_ms)
                    .arg("DUPLICATE_POLICY")
                    .arg("LAST")
                    .arg("LABELS")
                    .arg(&labels)
                    .ignore();
            }
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
            if self.series.len() <= id {
                self.series.resize(id + 1, None);
            }
            self.series[id] = Some(def.clone());
        }
    }

    fn key(&self, series: u32) -> &str {
        self.series[series as usize]
            .as_ref()
            .map(|def| def.key.as_str())
            .expect("the engine announces a series before its first sample")
    }

    /// A partition's checkpoint write, as `StoredFields::apply` defines it: the first after
    /// a placement replaces the hash (DEL, which also drops a checkpoint in the earlier
    /// JSON form); every write sets the head and the changed sites and deletes the sites
    /// that left.
    fn write_checkpoint(&self, pipe: &mut redis::Pipeline, write: &CheckpointWrite) {
        let key = self.checkpoint_key(write.partition);
        if write.replace {
            pipe.cmd("DEL").arg(&key).ignore();
        }
        let hset = pipe
            .cmd("HSET")
            .arg(&key)
            .arg(HEAD_FIELD)
            .arg(&write.head[..]);
        for (site, bytes) in &write.sites {
            hset.arg(site_field(site)).arg(&bytes[..]);
        }
        hset.ignore();
        if !write.removed.is_empty() {
            let hdel = pipe.cmd("HDEL").arg(&key);
            for site in &write.removed {
                hdel.arg(site_field(site));
            }
            hdel.ignore();
        }
    }

    fn transaction(&self, effects: &Effects) -> anyhow::Result<redis::Pipeline> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        for chunk in effects.samples.chunks(MADD_CHUNK) {
            // Sized up front: growing a command of a thousand samples by doubling copied it
            // about twice over (3 % of the host's time in a 1M drain, measured with `perf`).
            let key_bytes: usize = chunk.iter().map(|s| self.key(s.series).len()).sum();
            let mut cmd = redis::Cmd::with_capacity(
                1 + 3 * chunk.len(),
                "TS.MADD".len() + key_bytes + chunk.len() * MAX_NUMBER_TEXT_BYTES,
            );
            cmd.arg("TS.MADD");
            for s in chunk {
                cmd.arg(self.key(s.series)).arg(s.ts_ms).arg(s.value);
            }
            pipe.add_command(cmd);
        }
        for (hash, bytes) in &effects.plugin_builds {
            pipe.cmd("SET")
                .arg(self.plugin_build_key(hash))
                .arg(&bytes[..])
                .arg("NX")
                .ignore();
        }
        for write in &effects.checkpoints {
            self.write_checkpoint(&mut pipe, write);
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
        // Reading the checkpoint takes the partition over: claim it first, so a host that
        // still holds it can write nothing after this read.
        let claim = claim_command(&self.owner_key(partition));
        let epoch: i64 = retry_query("claim a partition", &mut self.conn, &claim).await?;
        self.epochs.insert(partition, epoch);
        let kind: String = retry_query(
            "read a checkpoint",
            &mut self.conn,
            redis::cmd("TYPE").arg(&key),
        )
        .await?;
        let unreadable =
            || format!("checkpoint {key} is not readable; delete it to start that partition over");
        match kind.as_str() {
            "none" => Ok(None),
            "hash" => {
                let fields: Vec<(String, Vec<u8>)> = retry_query(
                    "read a checkpoint",
                    &mut self.conn,
                    redis::cmd("HGETALL").arg(&key),
                )
                .await?;
                StoredFields::new(fields)
                    .decode(partition)
                    .with_context(unreadable)
            }
            "string" => {
                let json: Vec<u8> = retry_query(
                    "read a checkpoint",
                    &mut self.conn,
                    redis::cmd("GET").arg(&key),
                )
                .await?;
                tracing::info!(
                    partition,
                    "checkpoint {key} is in the earlier JSON form: read, and replaced in the \
                     binary form by the partition's next batch"
                );
                checkpoint_format::decode_legacy_json(&json)
                    .map(Some)
                    .with_context(unreadable)
            }
            other => anyhow::bail!(
                "{key} is a Redis {other}, not a checkpoint: another program uses this key \
                 prefix; start the host with its own --key-prefix"
            ),
        }
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

    fn keep_series(&mut self, defs: &[SeriesDef]) {
        self.remember(defs);
        self.to_create.extend_from_slice(defs);
    }

    async fn commit(&mut self, effects: &Effects) -> anyhow::Result<()> {
        self.remember(&effects.new_series);
        let mut delay = Duration::from_millis(100);
        loop {
            match self.try_commit(effects).await {
                Ok(()) => {
                    OUTAGE.succeeded();
                    for c in &effects.checkpoints {
                        self.written.insert(c.partition, c.next_offset);
                    }
                    return Ok(());
                }
                Err(e) if is_transient(&e) => {
                    OUTAGE.failed(&format_args!("writing a batch failed: {e:#}"));
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(MAX_RETRY_DELAY);
                }
                Err(e) if e.is::<SpuriousAbort>() => {
                    tracing::debug!("{e}; retrying the batch");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(MAX_RETRY_DELAY);
                }
                Err(e) => return Err(e.context("writing a batch to RedisTimeSeries")),
            }
        }
    }
}

impl RedisStore {
    async fn try_commit(&mut self, effects: &Effects) -> anyhow::Result<()> {
        // Two round trips per batch: the checks (server identity and partition owners, in
        // one pipeline), then the transaction.
        let checks = self.watch_and_check(effects).await?;
        let checked = self.check_server(checks.run_id).await;
        let Checks {
            taken_over,
            claims_lost,
            ..
        } = checks;
        if checked.is_err() || !taken_over.is_empty() || !claims_lost.is_empty() {
            let _: () = redis::cmd("UNWATCH").query_async(&mut self.conn).await?;
            checked?;
            // Nothing of the batch is written, not even its new series: create them before
            // the next batch that is (the engine announces each only once).
            self.to_create.extend_from_slice(&effects.new_series);
            // Another host's claim wins over a lost one of ours: the runner then leaves
            // those and claims the rest again anyway.
            if !taken_over.is_empty() {
                return Err(StoreError::Fenced {
                    partitions: taken_over,
                }
                .into());
            }
            return Err(StoreError::ClaimLost {
                partitions: claims_lost,
            }
            .into());
        }
        if self.recreate_series {
            let all: Vec<SeriesDef> = self.series.iter().flatten().cloned().collect();
            self.create_series(&all).await?;
            self.recreate_series = false;
            self.to_create.clear();
        } else {
            if !self.to_create.is_empty() {
                let kept = self.to_create.clone();
                self.create_series(&kept).await?;
                self.to_create.clear();
            }
            self.create_series(&effects.new_series).await?;
        }
        let pipe = Stage::Encode.time(|| self.transaction(effects))?;
        let mut conn = self.conn.clone();
        // TS.MADD reports a failed sample inside its reply, not as a command error. No
        // reply at all: the EXEC was aborted, a watched owner key changed.
        let replies: Option<Vec<redis::Value>> = pipe.query_async(&mut conn).await?;
        match replies {
            Some(replies) => check_madd_replies(&replies),
            None => Err(self.why_aborted(effects).await),
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
