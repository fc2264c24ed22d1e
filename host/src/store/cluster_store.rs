//! RedisTimeSeries on a Redis Cluster.
//!
//! Guarantees: a partition's checkpoint is written only after every sample of the batch is
//! stored, so a checkpoint never names an offset whose samples are not in Redis. The
//! samples of one site are written atomically (one script per site and chunk), but a batch
//! as a whole is not: a crash between the sites' writes and the checkpoint leaves some of a
//! batch stored and the checkpoint before it. Exactly-once still holds, because every
//! sample write is an upsert (duplicate policy LAST) and a restarted host replays the same
//! records from that checkpoint through the same engine state, writing the same values at
//! the same instants (the engine is deterministic, and plugins obey the batching rule).
//!
//! Duties of the caller: as for [`super::RedisStore`]: announce each series before its
//! first sample; write one partition's batches in order; take a partition over
//! ([`Store::load_checkpoint`]) before writing it. Keys must be laid out with
//! [`KeyLayout::Cluster`] (the engine's `key_layout`), so that a site's series share a slot.
//!
//! Partitioning: series are `<prefix>{<site>}:<sensor>:<kind>`, and beside them each site's
//! fence `<prefix>_fence:{<site>}`, all in the site's slot; a partition's checkpoint and its
//! owner key are `<prefix>_checkpoint:{<topic>:<p>}` and `<prefix>_owner:{<topic>:<p>}`, in
//! the partition's slot; plugin builds are `<prefix>_plugin:<sha256>` wherever they hash.
//! A batch is two rounds: the sites' writes (with the plugin builds), all sent at once and
//! spread over the shards that serve them, then the partitions' checkpoints.
//!
//! Fencing: taking a partition over claims it (`redis_common::claim_command`: an owner epoch larger
//! than every earlier one). A checkpoint write checks the epoch is still this store's; a
//! site write checks the site's fence is not newer than this store's epoch and moves it up
//! to it. So once a new owner has written a site, an old owner (frozen past its session
//! timeout, say) can write nothing more to it, nor any checkpoint of the partition; what an
//! old owner writes before that is overwritten by the new owner's replay of the same
//! records (see the guarantees). Refused writes are reported as [`StoreError::Fenced`].
//!
//! Errors: unreachable shards, timeouts, a cluster that is down or moving slots are retried
//! with backoff until the cluster answers (the batch is written again whole: every write is
//! idempotent), logged once per outage. A shard that lost data is found by the writes
//! themselves: a fence or a checkpoint this store wrote is not there. That is reported as
//! [`StoreError::DataLost`] for the partitions concerned; a partition whose samples were
//! lost has its checkpoint deleted first, so it is rebuilt from the start of the topic.

use std::collections::{HashMap, HashSet};

use anyhow::Context as _;
use futures_util::future::join_all;
use iot_protocol::series::KeyLayout;
use redis::cluster_async::ClusterConnection;

use super::cluster_scripts::{self as scripts, Outcome};
use super::redis_common::{
    claim_command, is_transient, labels, retention_ms, retry, retry_query, CONNECTION_TIMEOUT,
    RESPONSE_TIMEOUT,
};
use super::{RedisStoreConfig, Store, StoreError};
use crate::engine::checkpoint_format::{CheckpointWrite, StoredFields, HEAD_FIELD};
use crate::engine::{Effects, PartitionCheckpoint, SeriesDef, StoredSample};
use crate::outage::REDIS as OUTAGE;
use crate::profile::Stage;

/// Samples per site script: bounds the script's argument list (Lua's stack takes a few
/// thousand values) and how long one script holds its shard.
const SAMPLES_PER_SCRIPT: usize = 1000;

/// What the store knows of a series.
#[derive(Clone)]
struct KnownSeries {
    def: SeriesDef,
    /// Index of its site in `RedisClusterStore::fences`.
    site: usize,
}

pub struct RedisClusterStore {
    conn: ClusterConnection,
    config: RedisStoreConfig,
    series: Vec<Option<KnownSeries>>,
    /// Each site's fence key, by site index.
    fences: Vec<String>,
    site_index: HashMap<String, usize>,
    /// Sites whose fence this store has set: a later write must find it.
    fenced_sites: HashSet<usize>,
    /// The head of each partition's last checkpoint written: the next write must find it.
    written: HashMap<i32, (i64, Vec<u8>)>,
    /// Series to create before the next batch's samples (announced in a batch that was not
    /// written, or on a shard that lost data).
    to_create: Vec<SeriesDef>,
    /// The owner epoch this store claimed for each partition it took over.
    epochs: HashMap<i32, i64>,
}

/// One site's share of a batch: its new series and its samples.
#[derive(Default)]
struct SiteBatch<'a> {
    create: Vec<&'a SeriesDef>,
    samples: Vec<&'a StoredSample>,
    partition: Option<i32>,
}

impl RedisClusterStore {
    pub async fn connect(config: RedisStoreConfig) -> anyhow::Result<RedisClusterStore> {
        let client = redis::cluster::ClusterClientBuilder::new(vec![config.url.as_str()])
            .connection_timeout(CONNECTION_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT)
            .build()
            .with_context(|| format!("REDIS_URL {:?} is not a valid Redis URL", config.url))?;
        let conn = retry("connect to the Redis Cluster", || {
            client.get_async_connection()
        })
        .await;
        let mut store = RedisClusterStore {
            conn,
            config,
            series: Vec::new(),
            fences: Vec::new(),
            site_index: HashMap::new(),
            fenced_sites: HashSet::new(),
            written: HashMap::new(),
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
                "the Redis Cluster at {} has no TimeSeries module (TS.INFO is an unknown \
                 command): load redistimeseries.so on every node (scripts/redis-cluster up does)",
                self.config.url
            ),
            _ => Ok(()),
        }
    }

    pub fn checkpoint_key(&self, partition: i32) -> String {
        KeyLayout::Cluster.checkpoint_key(&self.config.key_prefix, &self.config.topic, partition)
    }

    pub fn owner_key(&self, partition: i32) -> String {
        KeyLayout::Cluster.owner_key(&self.config.key_prefix, &self.config.topic, partition)
    }

    pub fn plugin_build_key(&self, hash: &str) -> String {
        format!("{}_plugin:{hash}", self.config.key_prefix)
    }

    fn site(&mut self, name: &str) -> usize {
        if let Some(&i) = self.site_index.get(name) {
            return i;
        }
        self.fences
            .push(format!("{}_fence:{{{name}}}", self.config.key_prefix));
        self.site_index
            .insert(name.to_owned(), self.fences.len() - 1);
        self.fences.len() - 1
    }

    fn remember(&mut self, defs: &[SeriesDef]) {
        for def in defs {
            let site = self.site(&def.name.site);
            let id = def.id as usize;
            if self.series.len() <= id {
                self.series.resize(id + 1, None);
            }
            self.series[id] = Some(KnownSeries {
                def: def.clone(),
                site,
            });
        }
    }

    fn known(&self, series: u32) -> &KnownSeries {
        self.series[series as usize]
            .as_ref()
            .expect("the engine announces a series before its first sample")
    }

    fn epoch_arg(&self, partition: Option<i32>) -> i64 {
        partition
            .and_then(|p| self.epochs.get(&p).copied())
            .unwrap_or(0)
    }

    /// The batch's writes by site: the series to create first, then the samples.
    fn by_site<'a>(
        &self,
        effects: &'a Effects,
        create: &'a [SeriesDef],
    ) -> HashMap<usize, SiteBatch<'a>> {
        let mut sites: HashMap<usize, SiteBatch<'a>> = HashMap::new();
        for def in create.iter().chain(&effects.new_series) {
            let site = self.known(def.id).site;
            sites.entry(site).or_default().create.push(def);
        }
        for sample in &effects.samples {
            let site = sites.entry(self.known(sample.series).site).or_default();
            site.partition = Some(sample.partition);
            site.samples.push(sample);
        }
        sites
    }

    /// One site's writes as one pipeline to the shard of its slot.
    fn site_pipeline(&self, site: usize, batch: &SiteBatch<'_>) -> redis::Pipeline {
        let fence = &self.fences[site];
        let mut pipe = redis::pipe();
        for def in &batch.create {
            pipe.cmd("EVAL")
                .arg(scripts::CREATE_SERIES)
                .arg(1)
                .arg(&def.key)
                .arg(retention_ms(def, self.config.raw_retention))
                .arg(labels(def))
                .ignore();
        }
        let epoch = self.epoch_arg(batch.partition);
        let set_before = if self.fenced_sites.contains(&site) {
            "1"
        } else {
            "0"
        };
        // A site with only series to create (kept from a batch that was not written) gets no
        // write: creating a series with our settings is harmless to any owner.
        for chunk in batch.samples.chunks(SAMPLES_PER_SCRIPT) {
            let cmd = pipe
                .cmd("EVAL")
                .arg(scripts::WRITE_SITE)
                .arg(1 + chunk.len());
            cmd.arg(fence);
            for s in chunk {
                cmd.arg(self.known(s.series).def.key.as_str());
            }
            cmd.arg(epoch).arg(set_before);
            for s in chunk {
                cmd.arg(s.ts_ms).arg(s.value);
            }
        }
        pipe
    }

    fn checkpoint_cmd(&self, write: &CheckpointWrite) -> redis::Cmd {
        let epoch = self.epoch_arg(Some(write.partition));
        let expected: &[u8] = match self.written.get(&write.partition) {
            Some((_, head)) if !write.replace => head,
            _ => b"",
        };
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(scripts::WRITE_CHECKPOINT)
            .arg(2)
            .arg(self.owner_key(write.partition))
            .arg(self.checkpoint_key(write.partition))
            .arg(epoch)
            .arg(expected)
            .arg(if write.replace { "1" } else { "0" })
            .arg(HEAD_FIELD)
            .arg(&write.head[..])
            .arg(write.sites.len());
        for (site, bytes) in &write.sites {
            cmd.arg(crate::engine::checkpoint_format::site_field(site))
                .arg(&bytes[..]);
        }
        for site in &write.removed {
            cmd.arg(crate::engine::checkpoint_format::site_field(site));
        }
        cmd
    }

    async fn try_commit(&mut self, effects: &Effects) -> anyhow::Result<()> {
        let create = self.to_create.clone();
        let sites = self.by_site(effects, &create);
        // Round one: every site's series and samples, and the plugin builds, at once.
        // A pipeline goes to the shard of its first key: every key of a site's pipeline is
        // in the site's slot.
        let (site_ids, site_writes): (Vec<usize>, Vec<redis::Pipeline>) =
            Stage::Encode.time(|| {
                sites
                    .iter()
                    .map(|(&site, batch)| (site, self.site_pipeline(site, batch)))
                    .unzip()
            });
        let site_replies = join_all(site_writes.into_iter().map(|pipe| {
            let mut conn = self.conn.clone();
            async move { pipe.query_async::<Vec<redis::Value>>(&mut conn).await }
        }));
        let builds = join_all(effects.plugin_builds.iter().map(|(hash, bytes)| {
            let mut conn = self.conn.clone();
            let mut cmd = redis::cmd("SET");
            cmd.arg(self.plugin_build_key(hash))
                .arg(&bytes[..])
                .arg("NX");
            async move { cmd.query_async::<redis::Value>(&mut conn).await }
        }));
        let (site_replies, builds) = tokio::join!(site_replies, builds);
        for reply in builds {
            reply?;
        }
        let mut fenced = Vec::new();
        let mut lost_sites = Vec::new();
        for (site, reply) in site_ids.iter().zip(site_replies) {
            for value in reply? {
                match Outcome::parse(&value)? {
                    Outcome::Written => {}
                    Outcome::Fenced => fenced.extend(sites[site].partition),
                    Outcome::Lost => lost_sites.push(*site),
                    Outcome::ClaimLost => anyhow::bail!("a site write answered CLAIM_LOST"),
                }
            }
        }
        if !lost_sites.is_empty() {
            return Err(self.samples_lost(&lost_sites, &sites).await);
        }
        // Round two: the checkpoints, once every sample is stored (none of a partition
        // whose sites were fenced: its checkpoint must not move past what was refused).
        let checkpoints: Vec<&CheckpointWrite> = effects
            .checkpoints
            .iter()
            .filter(|write| !fenced.contains(&write.partition))
            .collect();
        let checkpoint_replies = join_all(checkpoints.iter().map(|write| {
            let mut conn = self.conn.clone();
            let cmd = self.checkpoint_cmd(write);
            async move { cmd.query_async::<redis::Value>(&mut conn).await }
        }))
        .await;
        let mut lost = Vec::new();
        let mut claims_lost = Vec::new();
        for (write, reply) in checkpoints.iter().zip(checkpoint_replies) {
            match Outcome::parse(&reply?)? {
                Outcome::Written => {}
                Outcome::Fenced => fenced.push(write.partition),
                Outcome::Lost => lost.push(write.partition),
                Outcome::ClaimLost => claims_lost.push(write.partition),
            }
        }
        if !lost.is_empty() {
            let lost = lost
                .into_iter()
                .map(|p| (p, self.written.remove(&p).map_or(-1, |(o, _)| o), None))
                .collect();
            return Err(StoreError::DataLost { lost }.into());
        }
        if !fenced.is_empty() {
            fenced.sort_unstable();
            fenced.dedup();
            return Err(StoreError::Fenced { partitions: fenced }.into());
        }
        if !claims_lost.is_empty() {
            // Written samples of theirs stay: the rebuild after the new claim replays the
            // same records from the checkpoint and writes the same values over them.
            return Err(StoreError::ClaimLost {
                partitions: claims_lost,
            }
            .into());
        }
        self.to_create.clear();
        self.fenced_sites.extend(
            sites
                .iter()
                .filter(|(_, b)| b.partition.is_some())
                .map(|(&s, _)| s),
        );
        for write in &effects.checkpoints {
            self.written
                .insert(write.partition, (write.next_offset, write.head.clone()));
        }
        Ok(())
    }

    /// Sites whose fence is gone: their shard lost data. Their partitions' checkpoints are
    /// deleted (they no longer match what is stored), so they are rebuilt from the start.
    async fn samples_lost(
        &mut self,
        lost_sites: &[usize],
        sites: &HashMap<usize, SiteBatch<'_>>,
    ) -> anyhow::Error {
        let mut partitions: Vec<i32> = lost_sites
            .iter()
            .filter_map(|s| sites[s].partition)
            .collect();
        partitions.sort_unstable();
        partitions.dedup();
        for &p in &partitions {
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(scripts::DROP_CHECKPOINT)
                .arg(2)
                .arg(self.owner_key(p))
                .arg(self.checkpoint_key(p))
                .arg(self.epoch_arg(Some(p)));
            if let Err(e) = cmd.query_async::<redis::Value>(&mut self.conn).await {
                return anyhow::Error::new(e)
                    .context("deleting the checkpoint of a lost partition");
            }
        }
        // Every series on that shard is gone: create every known series again.
        for s in lost_sites {
            self.fenced_sites.remove(s);
        }
        self.to_create = self
            .series
            .iter()
            .flatten()
            .map(|k| k.def.clone())
            .collect();
        let lost = partitions
            .into_iter()
            .map(|p| (p, self.written.remove(&p).map_or(-1, |(o, _)| o), None))
            .collect();
        StoreError::DataLost { lost }.into()
    }
}

impl Store for RedisClusterStore {
    async fn load_checkpoint(
        &mut self,
        partition: i32,
    ) -> anyhow::Result<Option<PartitionCheckpoint>> {
        let key = self.checkpoint_key(partition);
        let claim = claim_command(&self.owner_key(partition));
        let epoch: i64 = retry_query("claim a partition", &mut self.conn, &claim).await?;
        self.epochs.insert(partition, epoch);
        let fields: Vec<(String, Vec<u8>)> = retry_query(
            "read a checkpoint",
            &mut self.conn,
            redis::cmd("HGETALL").arg(&key),
        )
        .await?;
        if fields.is_empty() {
            return Ok(None);
        }
        StoredFields::new(fields)
            .decode(partition)
            .with_context(|| {
                format!("checkpoint {key} is not readable; delete it to start that partition over")
            })
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
        let mut delay = super::redis_common::FIRST_RETRY_DELAY;
        loop {
            match self.try_commit(effects).await {
                Ok(()) => {
                    OUTAGE.succeeded();
                    return Ok(());
                }
                Err(e) if is_transient(&e) => {
                    OUTAGE.failed(&format_args!("writing a batch failed: {e:#}"));
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(super::redis_common::MAX_RETRY_DELAY);
                }
                Err(e) => {
                    if e.downcast_ref::<StoreError>().is_some() {
                        // Not written: its new series are created before the next batch.
                        self.to_create.extend_from_slice(&effects.new_series);
                        return Err(e);
                    }
                    return Err(e.context("writing a batch to the Redis Cluster"));
                }
            }
        }
    }
}
