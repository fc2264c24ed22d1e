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
//! Layout: this file holds the engine's state and how it is made; `partitions` restores,
//! forgets and fences partitions; `swap` applies (or refuses) a tenant's new build;
//! `input` takes records into windows; `batch` ends a batch; `windows`
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
mod partitions;
mod series;
mod site;
mod swap;
mod tenant;
mod windows;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use anyhow::Context as _;
use iot_protocol::series::KeyLayout;
use iot_protocol::time::StampConvention;
use iot_protocol::SeriesName;

pub use checkpoint::{BuildRef, PartitionCheckpoint};
pub use effects::{Effects, OutRecord, OutTopic, SeriesDef, SeriesId, StoredSample};
pub use lateness::{Lateness, LatenessPolicy};
pub use tenant::{SwapReport, QUARANTINE_AFTER};

use crate::pipeline::Pipeline;
use crate::plugin::{Alarm, LoadedPlugin, PluginHost, Sample};
use crate::tenant::{SiteMatcher, TenantBuild};
use partitions::PartitionState;
use series::SeriesRegistry;
use site::SiteState;
use swap::archive;
use tenant::TenantState;

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

    fn tenant_of(&self, site: &str) -> Option<usize> {
        self.tenants.iter().position(|t| t.sites.matches(site))
    }

    /// Name of the series an output of a site is stored in (for tools and tests).
    pub fn output_series_name(&self, site: &str, output: usize) -> SeriesName {
        let tenant = self.sites.get(site).map_or(0, |s| s.tenant);
        let spec = &self.tenants[tenant].pipeline.outputs[output];
        SeriesName::new(site, spec.name.clone(), spec.kind)
    }
}
