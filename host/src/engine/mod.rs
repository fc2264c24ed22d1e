//! The engine: per-site event-time day windows folded through WASM plugins (SPEC §2–3).
//!
//! It is synchronous and does no I/O: [`Engine::process`] takes one input record,
//! [`Engine::finish_batch`] folds what the batch brought, emits every due or changed output
//! and returns the [`Effects`] (samples, topic records, checkpoints) for the caller to make
//! durable. [`crate::runner`] wires it to a source and sinks.
//!
//! Determinism is what makes crash recovery exact: given the same checkpoint and the same
//! records in the same order, the engine produces the same final values, whatever the batch
//! boundaries. Plugins fold samples in arrival order; emission happens at batch end from
//! the accumulated state.
//!
//! Layout: this file holds the engine's state, partitions (restore, forget) and tenants
//! (swap, refusal); `input` takes records into windows; `batch` ends a batch; `windows`
//! folds, finishes and emits a site's day windows; `failures` reports plugin failures;
//! `site`, `tenant`, `series`, `lateness` are the state they work on; [`checkpoint`] and
//! [`effects`] are what leaves the engine.

mod batch;
pub mod checkpoint;
pub mod checkpoint_format;
pub mod effects;
mod failures;
mod input;
mod lateness;
mod series;
mod site;
mod tenant;
mod windows;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use anyhow::Context as _;
use iot_protocol::series::KeyLayout;
use iot_protocol::time::StampConvention;
use iot_protocol::SeriesName;
use serde_json::json;

pub use checkpoint::{BuildRef, PartitionCheckpoint};
pub use effects::{Effects, OutRecord, OutTopic, SeriesDef, SeriesId, StoredSample};
pub use lateness::{Lateness, LatenessPolicy};
pub use tenant::{SwapReport, QUARANTINE_AFTER};

use crate::pipeline::Pipeline;
use crate::plugin::{Alarm, LoadedPlugin, PluginHost, Sample};
use crate::tenant::{SiteMatcher, TenantBuild};
use series::SeriesRegistry;
use site::SiteState;
use tenant::{OutputRemap, TenantState, VersionId};

/// A map looked up per reading. Its hasher (foldhash) is seeded per map like std's but is
/// not built to resist collision attacks; the keys are site and series names, which an
/// attacker able to publish readings could also flood in other ways (SPEC's bad-input
/// limits bound a record, not how many sites there are).
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// How the engine reads input and names what it writes.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Site of records in the plain line format.
    pub default_site: String,
    pub max_record_bytes: usize,
    pub lateness: LatenessPolicy,
    /// Prefix of every Redis key the engine names.
    pub key_prefix: String,
    /// How keys are laid out: one Redis, or a Redis Cluster (hash tags per site).
    pub key_layout: KeyLayout,
    /// Name of the input topic, quoted in dead-letter records.
    pub input_topic: String,
    /// How the input topic's producers stamp readings (`--stamps`).
    pub stamps: StampConvention,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            default_site: "default".into(),
            max_record_bytes: iot_protocol::record::DEFAULT_MAX_RECORD_BYTES,
            lateness: LatenessPolicy::default(),
            key_prefix: iot_protocol::series::DEFAULT_KEY_PREFIX.into(),
            key_layout: KeyLayout::Single,
            input_topic: "readings".into(),
            stamps: StampConvention::default(),
        }
    }
}

/// One record from the input topic.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

/// Counters since start, for logs and the bench.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Stats {
    pub records: u64,
    pub skipped_replayed: u64,
    /// Records of partitions another host took over, skipped (see [`Engine::fence`]).
    pub skipped_fenced: u64,
    pub on_time: u64,
    pub late_accepted: u64,
    pub late_rejected: u64,
    pub dead_letters: BTreeMap<&'static str, u64>,
    pub outputs_emitted: u64,
    /// Alarms alarm rules raised (a replayed alarm counts again).
    pub alarms_raised: u64,
    pub plugin_errors: u64,
}

impl Stats {
    pub fn dead_letter_total(&self) -> u64 {
        self.dead_letters.values().sum()
    }
}

struct PartitionState {
    next_offset: i64,
    /// The offset moved in the current batch: the partition needs a new checkpoint.
    moved: bool,
    /// Each site's checkpoint field as last written: the next write sends only the sites
    /// whose bytes differ.
    written: HashMap<String, Vec<u8>>,
    /// The next write replaces the stored checkpoint whole (nothing written since the
    /// partition was placed).
    replace: bool,
}

impl PartitionState {
    fn placed_at(next_offset: i64) -> PartitionState {
        PartitionState {
            next_offset,
            moved: false,
            written: HashMap::new(),
            replace: true,
        }
    }
}

/// One tenant as the engine starts with it.
pub struct TenantSetup {
    pub name: String,
    pub sites: SiteMatcher,
    /// Compiles archived builds of this tenant's plugins on restore (its limits).
    pub plugin_host: PluginHost,
    pub build: TenantBuild,
}

/// Dead-letter reason of a reading whose site no tenant owns.
pub const NO_TENANT: &str = "no-tenant";
/// Dead-letter reason of a reading that arrived on another partition than its site's
/// earlier readings: one event-time clock per site needs all of them in one order.
pub const SPLIT_SITE: &str = "split-site";

pub struct Engine {
    config: EngineConfig,
    tenants: Vec<TenantState>,
    /// Looked up per reading: a fast hasher (see [`FastMap`]).
    sites: FastMap<String, SiteState>,
    partitions: FastMap<i32, PartitionState>,
    series: SeriesRegistry,
    effects: Effects,
    stats: Stats,
    /// Reused buffer for derived outputs' samples.
    derived_samples: Vec<Sample>,
    /// Alarms raised by the folds of the site being refreshed, with their output, until
    /// `windows::emit_alarms` turns them into samples and records (kept to reuse its buffer).
    raised: Vec<(usize, Alarm)>,
    /// (site, partition) pairs already logged as split, so the log says it once.
    split_reported: std::collections::HashSet<(String, i32)>,
    /// Partitions another host took over (the store fenced this one): their records are
    /// skipped until the group assigns them here again.
    fenced: HashSet<i32>,
}

impl Engine {
    /// An engine with one tenant, `default`, owning every site. `plugins` maps plugin names
    /// (as the pipeline uses them) to loaded plugins.
    pub fn new(
        config: EngineConfig,
        pipeline: Arc<Pipeline>,
        plugins: &HashMap<String, LoadedPlugin>,
    ) -> anyhow::Result<Engine> {
        let limits = plugins
            .values()
            .next()
            .map(|p| p.limits())
            .unwrap_or_default();
        Engine::with_tenants(
            config,
            vec![TenantSetup {
                name: "default".into(),
                sites: SiteMatcher::all(),
                plugin_host: PluginHost::new(limits)?,
                build: TenantBuild {
                    pipeline,
                    plugins: plugins.clone(),
                },
            }],
        )
    }

    /// An engine with several tenants; a site belongs to the first tenant that matches it.
    pub fn with_tenants(config: EngineConfig, setups: Vec<TenantSetup>) -> anyhow::Result<Engine> {
        let mut effects = Effects::default();
        let mut new_builds = Vec::new();
        let mut tenants = Vec::with_capacity(setups.len());
        for setup in setups {
            let name = setup.name.clone();
            tenants.push(
                TenantState::new(
                    setup.name,
                    setup.sites,
                    setup.plugin_host,
                    &setup.build,
                    &mut new_builds,
                )
                .with_context(|| format!("tenant {name:?}"))?,
            );
        }
        effects.plugin_builds = archive(new_builds);
        Ok(Engine {
            series: SeriesRegistry::new(config.key_prefix.clone(), config.key_layout),
            config,
            tenants,
            sites: FastMap::default(),
            partitions: FastMap::default(),
            effects,
            stats: Stats::default(),
            derived_samples: Vec::new(),
            raised: Vec::new(),
            split_reported: Default::default(),
            fenced: HashSet::new(),
        })
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Tenant names, in the order updates address them.
    /// Windows held now (a build failed on them; they wait for another), per tenant, in
    /// tenant order. Walks every open window: for the periodic progress report, not per
    /// batch.
    pub fn held_windows(&self) -> Vec<(&str, usize)> {
        let mut held = vec![0; self.tenants.len()];
        for site in self.sites.values() {
            let slots = site.days.values().flat_map(|day| day.slots.iter());
            held[site.tenant] += slots.filter(|slot| slot.held_by.is_some()).count();
        }
        self.tenants
            .iter()
            .map(|t| t.name.as_str())
            .zip(held)
            .collect()
    }

    pub fn tenant_names(&self) -> Vec<&str> {
        self.tenants.iter().map(|t| t.name.as_str()).collect()
    }

    /// Whether the partition's state is in memory (else the caller restores it first).
    pub fn knows_partition(&self, partition: i32) -> bool {
        self.partitions.contains_key(&partition)
    }

    /// The partitions whose state is in memory.
    pub fn partitions(&self) -> Vec<i32> {
        let mut partitions: Vec<i32> = self.partitions.keys().copied().collect();
        partitions.sort_unstable();
        partitions
    }

    /// Plugin builds a checkpoint refers to that no tenant has loaded: the caller fetches
    /// them from the archive and passes them to [`restore_partition`](Self::restore_partition).
    pub fn missing_builds(&self, checkpoint: &PartitionCheckpoint) -> Vec<String> {
        let mut missing: Vec<String> = checkpoint
            .builds
            .iter()
            .filter(|b| self.tenants.iter().all(|t| t.find_build(&b.hash).is_none()))
            .map(|b| b.hash.clone())
            .collect();
        missing.dedup();
        missing
    }

    /// Installs a partition's state from its checkpoint, or an empty state starting at the
    /// consumer's position when there is none. `archived` holds the component bytes of the
    /// builds [`missing_builds`](Self::missing_builds) named, by hash.
    pub fn restore_partition(
        &mut self,
        partition: i32,
        checkpoint: Option<PartitionCheckpoint>,
        archived: &HashMap<String, Vec<u8>>,
    ) -> anyhow::Result<()> {
        let next_offset = match checkpoint {
            Some(cp) => {
                let filed_under = cp.stamps.as_deref().unwrap_or("interval-end");
                if filed_under != self.config.stamps.as_str() {
                    anyhow::bail!(
                        "the checkpoint of partition {partition} filed its windows under \
                         --stamps {filed_under}, but this host runs with --stamps {}: start it \
                         with --stamps {filed_under}, or use a new --key-prefix to start over",
                        self.config.stamps
                    );
                }
                for (name, snapshot) in &cp.sites {
                    let Some(t) = self.tenant_of(name) else {
                        tracing::warn!(site = %name, "checkpoint holds a site no tenant owns now; its windows are dropped");
                        continue;
                    };
                    let builds = self.restore_builds(t, &cp.builds, archived);
                    let tenant = &self.tenants[t];
                    let gone: Vec<&String> = snapshot
                        .outputs
                        .iter()
                        .filter(|o| !tenant.output_names.contains(o))
                        .collect();
                    if !gone.is_empty() {
                        tracing::warn!(site = %name, outputs = ?gone, "the pipeline no longer has these outputs: their open windows in the checkpoint are dropped (stored values stay)");
                    }
                    let site = SiteState::restore(
                        partition,
                        t,
                        tenant.output_names.len(),
                        snapshot,
                        |n| tenant.output_names.iter().position(|o| o == n),
                        |b| builds.get(b as usize).copied().flatten(),
                    )
                    .with_context(|| {
                        format!("checkpoint of site {name} in partition {partition}")
                    })?;
                    self.sites.insert(name.clone(), site);
                }
                cp.next_offset
            }
            None => 0,
        };
        self.partitions
            .insert(partition, PartitionState::placed_at(next_offset));
        Ok(())
    }

    /// The tenant's version of each build a checkpoint names; a build neither loaded nor
    /// archived is replaced by the output's current build (with a warning).
    fn restore_builds(
        &mut self,
        tenant: usize,
        builds: &[BuildRef],
        archived: &HashMap<String, Vec<u8>>,
    ) -> Vec<Option<VersionId>> {
        let t = &mut self.tenants[tenant];
        builds
            .iter()
            .map(|b| {
                if let Some(v) = t.find_build(&b.hash) {
                    return Some(v);
                }
                match archived.get(&b.hash).map(|bytes| t.install_archived(bytes, &b.hash)) {
                    Some(Ok(v)) => Some(v),
                    Some(Err(e)) => {
                        tracing::warn!(tenant = %t.name, build = %b.hash, "archived plugin build does not load: {e}; its windows continue on the current build");
                        None
                    }
                    None => {
                        tracing::warn!(tenant = %t.name, build = %b.hash, "plugin build named by a checkpoint is not in the archive; its windows continue on the current build");
                        None
                    }
                }
            })
            .collect()
    }

    /// Forgets partitions handed to another instance; their state lives on in the store.
    /// Another host owns these partitions now: forget them, and skip their records until
    /// [`unfence`](Self::unfence) (the group assigned them here again).
    pub fn fence(&mut self, partitions: &[i32]) {
        self.forget_partitions(partitions);
        self.fenced.extend(partitions);
    }

    pub fn unfence(&mut self, partition: i32) {
        self.fenced.remove(&partition);
    }

    pub fn is_fenced(&self, partition: i32) -> bool {
        self.fenced.contains(&partition)
    }

    pub fn forget_partitions(&mut self, partitions: &[i32]) {
        self.sites.retain(|_, s| !partitions.contains(&s.partition));
        for p in partitions {
            self.partitions.remove(p);
        }
    }

    fn tenant_of(&self, site: &str) -> Option<usize> {
        self.tenants.iter().position(|t| t.sites.matches(site))
    }

    /// Switches a tenant to a new pipeline and plugin builds, between two batches (the
    /// rules for open windows are in `tenant.rs`). Windows held by a failed build are
    /// retried at the end of the next batch.
    pub fn apply(&mut self, tenant: usize, build: &TenantBuild) -> anyhow::Result<SwapReport> {
        let mut new_builds = Vec::new();
        let t = &mut self.tenants[tenant];
        let (remap, report) = t.apply(build, &mut new_builds)?;
        crate::metrics::global()
            .swaps
            .get_or_create(&crate::metrics::TenantLabels {
                tenant: t.name.clone(),
            })
            .inc();
        self.effects.plugin_builds.extend(archive(new_builds));
        let mut in_use = HashSet::new();
        let mut moved = HashSet::new();
        for site in self.sites.values_mut().filter(|s| s.tenant == tenant) {
            remap_site(site, &remap);
            for day in site.days.values_mut() {
                for slot in &mut day.slots {
                    in_use.extend(slot.version);
                    if slot.held_by.is_some() {
                        slot.dirty = day.emitted;
                        in_use.extend(slot.held_by);
                    }
                }
            }
            site.touched = true;
            moved.insert(site.partition);
        }
        self.tenants[tenant].collect_versions(&in_use);
        let mut report = report;
        report.builds_loaded = self.tenants[tenant].loaded_versions();
        for p in moved {
            if let Some(state) = self.partitions.get_mut(&p) {
                state.moved = true;
            }
        }
        Ok(report)
    }

    /// Records that a tenant's new plugin or pipeline was refused (it stays on its current
    /// build): a `plugin-errors` record, as for a failing call.
    pub fn refused(&mut self, tenant: usize, what: &str, error: &str) {
        self.stats.plugin_errors += 1;
        let tenant = &self.tenants[tenant].name;
        self.effects.records.push(OutRecord {
            topic: OutTopic::PluginErrors,
            key: Some(format!("{tenant}:deploy")),
            value: json!({
                "tenant": tenant,
                "action": "refused",
                "what": what,
                // A refusal quotes what failed (a parse error can quote the file).
                "error": crate::plugin::bounded_message(error.to_owned()),
            })
            .to_string(),
        });
    }

    /// Name of the series an output of a site is stored in (for tools and tests).
    pub fn output_series_name(&self, site: &str, output: usize) -> SeriesName {
        let tenant = self.sites.get(site).map_or(0, |s| s.tenant);
        let spec = &self.tenants[tenant].pipeline.outputs[output];
        SeriesName::new(site, spec.name.clone(), spec.kind)
    }
}

/// Moves a site's windows from the old output numbering to the new one.
fn remap_site(site: &mut SiteState, remap: &OutputRemap) {
    let old_from = std::mem::take(&mut site.output_from);
    site.output_from = remap
        .kept_from
        .iter()
        .map(|kept| kept.map_or(site.newest_ts, |o| old_from[o]))
        .collect();
    site.output_series = vec![None; remap.outputs];
    for day in site.days.values_mut() {
        let mut old = std::mem::take(&mut day.slots);
        day.slots = remap
            .kept_from
            .iter()
            .map(|kept| {
                kept.map(|o| std::mem::take(&mut old[o]))
                    .unwrap_or_default()
            })
            .collect();
    }
}

fn archive(builds: Vec<LoadedPlugin>) -> Vec<(String, Arc<[u8]>)> {
    builds
        .into_iter()
        .map(|b| (b.hash().to_owned(), b.bytes().clone()))
        .collect()
}
