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

pub mod checkpoint;
pub mod effects;
mod lateness;
mod series;
mod site;
mod tenant;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use anyhow::Context as _;
use iot_protocol::record::{parse_record, Reading};
use iot_protocol::time::{format_ts, interval_end_window_end, DAY_MS};
use iot_protocol::{Kind, SeriesName};
use serde_json::json;

pub use checkpoint::{BuildRef, PartitionCheckpoint};
pub use effects::{Effects, OutRecord, OutTopic, SeriesDef, SeriesId, StoredSample};
pub use lateness::{Lateness, LatenessPolicy};
pub use tenant::{SwapReport, QUARANTINE_AFTER};

use crate::pipeline::{InputSource, Pipeline};
use crate::plugin::{LoadedPlugin, PluginError, PluginHost, PluginInstance, Sample, Window};
use crate::profile::Stage;
use crate::tenant::{SiteMatcher, TenantBuild};
use series::SeriesRegistry;
use site::{DayState, SiteState, Slot};
use tenant::{OutputRemap, TenantState, VersionId};

/// How the engine reads input and names what it writes.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Site of records in the plain line format.
    pub default_site: String,
    pub max_record_bytes: usize,
    pub lateness: LatenessPolicy,
    /// Prefix of every Redis key the engine names.
    pub key_prefix: String,
    /// Name of the input topic, quoted in dead-letter records.
    pub input_topic: String,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            default_site: "default".into(),
            max_record_bytes: iot_protocol::record::DEFAULT_MAX_RECORD_BYTES,
            lateness: LatenessPolicy::default(),
            key_prefix: iot_protocol::series::DEFAULT_KEY_PREFIX.into(),
            input_topic: "readings".into(),
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
    pub on_time: u64,
    pub late_accepted: u64,
    pub late_rejected: u64,
    pub dead_letters: BTreeMap<&'static str, u64>,
    pub outputs_emitted: u64,
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
    sites: HashMap<String, SiteState>,
    partitions: HashMap<i32, PartitionState>,
    series: SeriesRegistry,
    effects: Effects,
    stats: Stats,
    /// Reused buffer for derived outputs' samples.
    derived_samples: Vec<Sample>,
    /// (site, partition) pairs already logged as split, so the log says it once.
    split_reported: std::collections::HashSet<(String, i32)>,
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
            series: SeriesRegistry::new(config.key_prefix.clone()),
            config,
            tenants,
            sites: HashMap::new(),
            partitions: HashMap::new(),
            effects,
            stats: Stats::default(),
            derived_samples: Vec::new(),
            split_reported: Default::default(),
        })
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Tenant names, in the order updates address them.
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
        self.partitions.insert(
            partition,
            PartitionState {
                next_offset,
                moved: false,
            },
        );
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

    /// Takes one record. Records below the partition's checkpoint were already stored
    /// before a restart and are skipped: nothing is counted twice.
    pub fn process(&mut self, record: &SourceRecord) {
        let partition = self
            .partitions
            .entry(record.partition)
            .or_insert(PartitionState {
                next_offset: 0,
                moved: false,
            });
        if record.offset < partition.next_offset {
            self.stats.skipped_replayed += 1;
            return;
        }
        partition.next_offset = record.offset + 1;
        partition.moved = true;
        self.stats.records += 1;
        // Borrow the config's default site for parsing without cloning it per record.
        let default_site = std::mem::take(&mut self.config.default_site);
        match parse_record(&record.payload, &default_site, self.config.max_record_bytes) {
            Ok(reading) => self.accept(record, reading),
            Err(error) => self.dead_letter(record, error.reason.as_str(), &error.detail),
        }
        self.config.default_site = default_site;
    }

    fn accept(&mut self, record: &SourceRecord, reading: Reading<'_>) {
        if !self.sites.contains_key(reading.site.as_ref()) {
            let Some(tenant) = self.tenant_of(&reading.site) else {
                let detail = format!(
                    "no tenant owns site {:?}: add it to a tenant's `sites` in the tenants file",
                    reading.site
                );
                self.dead_letter(record, NO_TENANT, &detail);
                return;
            };
            let outputs = self.tenants[tenant].output_names.len();
            self.sites.insert(
                reading.site.to_string(),
                SiteState::new(record.partition, tenant, outputs),
            );
        }
        let site_name = reading.site.as_ref();
        let site = self.sites.get_mut(site_name).expect("inserted above");
        if site.partition != record.partition {
            let first = site.partition;
            self.split_site(record, site_name, first);
            return;
        }
        let tenant = &self.tenants[site.tenant];
        let outputs = tenant.output_names.len();
        site.touched = true;
        let end = interval_end_window_end(reading.ts_ms);
        let lateness = self.config.lateness.classify(end, site.newest_ts);
        let kind = match lateness {
            Lateness::OnTime => Kind::Raw,
            Lateness::Accepted => Kind::LateAccepted,
            Lateness::Rejected => Kind::LateRej,
        };
        let series =
            self.series
                .input_series(site_name, site, reading.sensor, kind, &mut self.effects);
        self.effects.samples.push(StoredSample {
            series,
            ts_ms: reading.ts_ms,
            value: reading.value,
        });
        match lateness {
            Lateness::OnTime => self.stats.on_time += 1,
            Lateness::Accepted => self.stats.late_accepted += 1,
            Lateness::Rejected => {
                self.stats.late_rejected += 1;
                let watermark = self.config.lateness.watermark(site.newest_ts);
                self.effects.records.push(late_rejected_record(
                    &reading,
                    end,
                    watermark,
                    &self.config.lateness,
                ));
                return;
            }
        }
        site.newest_ts = site.newest_ts.max(reading.ts_ms);
        for &(output, input) in &tenant.pipeline.routes_by_sensor[reading.sensor.index()] {
            let sample = Sample {
                input,
                ts_ms: reading.ts_ms,
                value: reading.value,
            };
            push_sample(site, end, output, outputs, sample);
            // A reading at a day's start instant also opens the next day for plugins that
            // need both ends (daily difference of a cumulative meter).
            if reading.ts_ms == end && tenant.includes_window_start[output] {
                push_sample(site, end + DAY_MS, output, outputs, sample);
            }
        }
    }

    /// A reading of a site on another partition than the site's first one: its watermark
    /// would be advanced by whichever partition is read first, so it is not folded anywhere
    /// but dead-lettered (nothing is lost: it can be replayed once the producer keys by
    /// site), and the split is logged once per site and partition.
    fn split_site(&mut self, record: &SourceRecord, site: &str, first: i32) {
        let detail = format!(
            "site {site:?} arrives on partition {first} and also on partition {}: all readings \
             of a site must be on one partition (key records by site id, or repartition the \
             topic); this reading is not aggregated",
            record.partition
        );
        if self
            .split_reported
            .insert((site.to_owned(), record.partition))
        {
            tracing::warn!(
                site,
                first_partition = first,
                other_partition = record.partition,
                "{detail}"
            );
        }
        self.dead_letter(record, SPLIT_SITE, &detail);
    }

    fn dead_letter(&mut self, record: &SourceRecord, reason: &'static str, detail: &str) {
        *self.stats.dead_letters.entry(reason).or_default() += 1;
        const MAX_PAYLOAD_ECHO: usize = 2048;
        let echo = &record.payload[..record.payload.len().min(MAX_PAYLOAD_ECHO)];
        let value = json!({
            "reason": reason,
            "detail": detail,
            "payload": String::from_utf8_lossy(echo),
            "payload_bytes": record.payload.len(),
            "topic": self.config.input_topic,
            "partition": record.partition,
            "offset": record.offset,
        });
        self.effects.records.push(OutRecord {
            topic: OutTopic::DeadLetter,
            key: record
                .key
                .as_deref()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
            value: value.to_string(),
        });
    }

    /// Folds everything pending, emits due and changed outputs, evicts days beyond the
    /// allowed lateness, and returns the batch's effects with a checkpoint per touched
    /// partition.
    pub fn finish_batch(&mut self) -> Effects {
        Stage::Fold.time(|| self.fold_touched_sites());
        Stage::Checkpoint.time(|| self.take_effects())
    }

    fn fold_touched_sites(&mut self) {
        let mut touched: Vec<String> = self
            .sites
            .iter()
            .filter(|(_, s)| s.touched)
            .map(|(n, _)| n.clone())
            .collect();
        touched.sort_unstable();
        for name in &touched {
            self.refresh_site(name);
            self.sites
                .get_mut(name)
                .expect("touched site exists")
                .touched = false;
        }
    }

    /// The batch's effects, with a checkpoint of each partition that needs one.
    fn take_effects(&mut self) -> Effects {
        // Only partitions whose offset moved (or whose windows a swap changed) get a new
        // checkpoint.
        let mut partitions: Vec<i32> = Vec::new();
        for (&p, state) in self.partitions.iter_mut() {
            if std::mem::take(&mut state.moved) {
                partitions.push(p);
            }
        }
        partitions.sort_unstable();
        let mut effects = std::mem::take(&mut self.effects);
        effects.checkpoints = partitions.into_iter().map(|p| self.checkpoint(p)).collect();
        effects
    }

    fn checkpoint(&self, partition: i32) -> PartitionCheckpoint {
        let mut builds: Vec<BuildRef> = Vec::new();
        let mut index: HashMap<(usize, VersionId), u32> = HashMap::new();
        let sites = self
            .sites
            .iter()
            .filter(|(_, s)| s.partition == partition)
            .map(|(n, s)| {
                let tenant = &self.tenants[s.tenant];
                let mut build_index = |v: VersionId| {
                    *index.entry((s.tenant, v)).or_insert_with(|| {
                        let version = tenant.version(v);
                        builds.push(BuildRef {
                            hash: version.plugin.hash().to_owned(),
                            state_version: version.state_version(),
                        });
                        (builds.len() - 1) as u32
                    })
                };
                (
                    n.clone(),
                    s.snapshot(&tenant.output_names, &mut build_index),
                )
            })
            .collect();
        PartitionCheckpoint {
            partition,
            next_offset: self.partitions.get(&partition).map_or(0, |p| p.next_offset),
            builds,
            sites,
        }
    }

    fn refresh_site(&mut self, name: &str) {
        let mut site = self.sites.remove(name).expect("site exists");
        let watermark = self.config.lateness.watermark(site.newest_ts);
        let ends: Vec<i64> = site.days.keys().copied().collect();
        for end in ends {
            let mut day = site.days.remove(&end).expect("day exists");
            let due = end < watermark;
            if due && (!day.emitted || day.needs_refresh()) {
                self.emit_day(name, &mut site, end, &mut day);
            } else if !due {
                self.fold_pending(name, &site, end, &mut day);
            }
            if !self.config.lateness.retains(end, watermark) {
                // Evicted: no reading can change this day any more.
                self.report_unresolved(name, &site, end, &day);
                continue;
            }
            site.days.insert(end, day);
        }
        self.sites.insert(name.to_owned(), site);
    }

    /// Folds the pending samples of every slot of a day, without finishing.
    fn fold_pending(&mut self, name: &str, site: &SiteState, end: i64, day: &mut DayState) {
        for output in 0..day.slots.len() {
            self.fold_slot(name, site.tenant, end, output, day);
        }
    }

    /// Folds a slot's pending samples with the build the swap rules give it. A failure
    /// holds the window (its samples stay pending) until another build is deployed.
    fn fold_slot(
        &mut self,
        site: &str,
        tenant: usize,
        end: i64,
        output: usize,
        day: &mut DayState,
    ) {
        let slot = &mut day.slots[output];
        if slot.pending.is_empty() {
            return;
        }
        let t = &mut self.tenants[tenant];
        let version = t.resolve(output, slot.version);
        if !ready_to_call(slot, version, t.version(version).quarantined) {
            return;
        }
        let window = window_of(end);
        let pipeline = t.pipeline.clone();
        let spec = &pipeline.outputs[output];
        let (params, inputs) = (&spec.params, spec.inputs.len() as u32);
        let plugin = &mut t.version_mut(version).instance;
        let result = fold_into(
            plugin,
            &mut slot.state,
            params,
            inputs,
            window,
            &slot.pending,
        );
        match result {
            Ok(()) => {
                slot.version = Some(version);
                slot.pending.clear();
                t.version_mut(version).failures_in_a_row = 0;
            }
            Err(error) => {
                slot.held_by = Some(version);
                self.plugin_failed(site, tenant, output, version, end, &error);
            }
        }
    }

    /// Emits every output of a due day: first the plugins fed by readings, then the derived
    /// outputs in dependency order, recomputing those whose inputs changed.
    #[allow(clippy::needless_range_loop)] // `output` indexes the pipeline, the day and `changed`
    fn emit_day(&mut self, name: &str, site: &mut SiteState, end: i64, day: &mut DayState) {
        let first_time = !day.emitted;
        let pipeline = self.tenants[site.tenant].pipeline.clone();
        let outputs = pipeline.outputs.len();
        let mut changed = vec![false; outputs];
        for output in 0..outputs {
            if pipeline.outputs[output].is_derived() || !site.computes(output, end) {
                continue;
            }
            let slot = &day.slots[output];
            if !(first_time || slot.dirty || !slot.pending.is_empty()) {
                continue;
            }
            self.fold_slot(name, site.tenant, end, output, day);
            let before = day.slots[output].value;
            let value = self.finish_slot(name, site.tenant, end, output, day);
            day.slots[output].dirty = false;
            if day.slots[output].held_by.is_some() {
                continue; // no value while held; the stored one (if any) stays
            }
            day.slots[output].value = value;
            if let Some(value) = value {
                self.emit(name, site, output, end, value);
            }
            changed[output] = first_time || value.map(f64::to_bits) != before.map(f64::to_bits);
        }
        for &output in &pipeline.derived_order {
            if !site.computes(output, end) {
                continue;
            }
            let spec = &pipeline.outputs[output];
            let inputs_changed = spec
                .inputs
                .iter()
                .any(|i| matches!(i, InputSource::Output(u) if changed[*u]));
            let upstream_held = spec
                .inputs
                .iter()
                .any(|i| matches!(i, InputSource::Output(u) if day.slots[*u].held_by.is_some()));
            let retry = std::mem::take(&mut day.slots[output].dirty);
            if upstream_held || !(first_time || inputs_changed || retry) {
                continue; // an output computed from a held output is held with it
            }
            let before = day.slots[output].value;
            let value = self.compute_derived(name, site.tenant, end, output, day);
            if day.slots[output].held_by.is_some() {
                continue;
            }
            day.slots[output].value = value;
            if let Some(value) = value {
                self.emit(name, site, output, end, value);
            }
            changed[output] = first_time || value.map(f64::to_bits) != before.map(f64::to_bits);
        }
        day.emitted = true;
    }

    fn finish_slot(
        &mut self,
        site: &str,
        tenant: usize,
        end: i64,
        output: usize,
        day: &mut DayState,
    ) -> Option<f64> {
        let slot = &mut day.slots[output];
        if !slot.pending.is_empty() {
            return None; // held: the fold did not happen
        }
        let t = &mut self.tenants[tenant];
        let version = t.resolve(output, slot.version);
        if !ready_to_call(slot, version, t.version(version).quarantined) {
            return None;
        }
        let state = slot.state.as_ref()?;
        match t
            .version_mut(version)
            .instance
            .finish(state, window_of(end))
        {
            Ok(value) => {
                slot.version = Some(version);
                t.version_mut(version).failures_in_a_row = 0;
                value
            }
            Err(error) => {
                slot.held_by = Some(version);
                self.plugin_failed(site, tenant, output, version, end, &error);
                None
            }
        }
    }

    /// A derived output is recomputed from scratch: one sample per input, each input's
    /// current value for the day. Missing inputs are left out; the plugin decides.
    fn compute_derived(
        &mut self,
        site: &str,
        tenant: usize,
        end: i64,
        output: usize,
        day: &mut DayState,
    ) -> Option<f64> {
        let window = window_of(end);
        let t = &mut self.tenants[tenant];
        let version = t.output_version[output];
        if !ready_to_call(
            &mut day.slots[output],
            version,
            t.version(version).quarantined,
        ) {
            return None;
        }
        let pipeline = t.pipeline.clone();
        let spec = &pipeline.outputs[output];
        self.derived_samples.clear();
        for (position, input) in spec.inputs.iter().enumerate() {
            if let InputSource::Output(upstream) = *input {
                if let Some(value) = day.slots[upstream].value {
                    self.derived_samples.push(Sample {
                        input: position as u32,
                        ts_ms: end,
                        value,
                    });
                }
            }
        }
        let (params, inputs) = (&spec.params, spec.inputs.len() as u32);
        let plugin = &mut t.version_mut(version).instance;
        let result = (|| -> Result<Option<f64>, PluginError> {
            let mut state = plugin.init(params, inputs, window)?;
            plugin.fold(&mut state, window, &self.derived_samples)?;
            plugin.finish(&state, window)
        })();
        match result {
            Ok(value) => {
                t.version_mut(version).failures_in_a_row = 0;
                value
            }
            Err(error) => {
                day.slots[output].held_by = Some(version);
                self.plugin_failed(site, tenant, output, version, end, &error);
                None
            }
        }
    }

    fn emit(&mut self, site_name: &str, site: &mut SiteState, output: usize, end: i64, value: f64) {
        let spec = &self.tenants[site.tenant].pipeline.outputs[output];
        let series = self
            .series
            .output_series(site_name, site, output, spec, &mut self.effects);
        self.effects.samples.push(StoredSample {
            series,
            ts_ms: end,
            value,
        });
        let key = self.series.key(series);
        self.effects.records.push(OutRecord {
            topic: OutTopic::Aggregates,
            key: Some(format!("{key}@{end}")),
            value: json!({
                "site": site_name,
                "sensor": spec.name,
                "kind": spec.kind.as_str(),
                "ts": format_ts(end),
                "ts_ms": end,
                "value": value,
            })
            .to_string(),
        });
        self.stats.outputs_emitted += 1;
    }

    /// A call failed: count it, log it, write a `plugin-errors` record, and quarantine the
    /// build after too many failures in a row.
    fn plugin_failed(
        &mut self,
        site: &str,
        tenant: usize,
        output: usize,
        version: VersionId,
        end: i64,
        error: &PluginError,
    ) {
        let t = &mut self.tenants[tenant];
        let pipeline = t.pipeline.clone();
        let spec = &pipeline.outputs[output];
        let tenant_name = t.name.clone();
        let v = t.version_mut(version);
        v.failures_in_a_row += 1;
        let quarantine = !v.quarantined && v.failures_in_a_row >= QUARANTINE_AFTER;
        v.quarantined |= quarantine;
        let build = v.plugin.short_hash().to_owned();
        let output_name = format!("{}:{}", spec.name, spec.kind);
        tracing::warn!(tenant = %tenant_name, site, output = %output_name, plugin = %spec.plugin, build = %build, day_end = %format_ts(end), "plugin failed, window held until a new build is deployed: {error}");
        self.stats.plugin_errors += 1;
        self.effects.records.push(OutRecord {
            topic: OutTopic::PluginErrors,
            key: Some(format!("{site}:{output_name}")),
            value: json!({
                "tenant": tenant_name,
                "site": site,
                "output": spec.name,
                "kind": spec.kind.as_str(),
                "plugin": spec.plugin,
                "build": build,
                "window_end": format_ts(end),
                "action": "held",
                "error": error.to_string(),
            })
            .to_string(),
        });
        if quarantine {
            tracing::error!(tenant = %tenant_name, plugin = %spec.plugin, build = %build, "plugin build quarantined after {QUARANTINE_AFTER} failures in a row: its outputs are held until a new build is deployed");
            self.effects.records.push(OutRecord {
                topic: OutTopic::PluginErrors,
                key: Some(format!("{tenant_name}:{}", spec.plugin)),
                value: json!({
                    "tenant": tenant_name,
                    "plugin": spec.plugin,
                    "build": build,
                    "action": "quarantined",
                    "error": format!("{QUARANTINE_AFTER} failures in a row; the last: {error}"),
                })
                .to_string(),
            });
        }
    }

    /// A day leaves memory with windows still held: their values are lost for good, say so.
    fn report_unresolved(&mut self, name: &str, site: &SiteState, end: i64, day: &DayState) {
        let t = &self.tenants[site.tenant];
        for (output, slot) in day.slots.iter().enumerate() {
            let Some(version) = slot.held_by else {
                continue;
            };
            let spec = &t.pipeline.outputs[output];
            self.stats.plugin_errors += 1;
            self.effects.records.push(OutRecord {
                topic: OutTopic::PluginErrors,
                key: Some(format!("{name}:{}:{}", spec.name, spec.kind)),
                value: json!({
                    "tenant": t.name,
                    "site": name,
                    "output": spec.name,
                    "kind": spec.kind.as_str(),
                    "plugin": spec.plugin,
                    "build": t.version(version).plugin.short_hash(),
                    "window_end": format_ts(end),
                    "action": "dropped",
                    "error": format!(
                        "the window closed (beyond the allowed lateness) while held: no fixed build was deployed in time; {} samples were not folded",
                        slot.pending.len()
                    ),
                })
                .to_string(),
            });
        }
    }

    /// Name of the series an output of a site is stored in (for tools and tests).
    pub fn output_series_name(&self, site: &str, output: usize) -> SeriesName {
        let tenant = self.sites.get(site).map_or(0, |s| s.tenant);
        let spec = &self.tenants[tenant].pipeline.outputs[output];
        SeriesName::new(site, spec.name.clone(), spec.kind)
    }
}

/// Folds `samples` into the accumulator in place, starting one with `init` if there is none.
/// On error the accumulator is as it was (none stays none), so a later build can retry.
fn fold_into(
    plugin: &mut PluginInstance,
    state: &mut Option<Vec<u8>>,
    params: &[(String, String)],
    inputs: u32,
    window: Window,
    samples: &[Sample],
) -> Result<(), PluginError> {
    match state {
        Some(state) => plugin.fold(state, window, samples),
        None => {
            let mut fresh = plugin.init(params, inputs, window)?;
            plugin.fold(&mut fresh, window, samples)?;
            *state = Some(fresh);
            Ok(())
        }
    }
}

/// Whether a slot may call `version`: not while that very build holds it or is quarantined
/// (the slot is then held by it). Another build lifts the hold.
fn ready_to_call(slot: &mut Slot, version: VersionId, quarantined: bool) -> bool {
    if slot.held_by == Some(version) {
        return false;
    }
    if quarantined {
        slot.held_by = Some(version);
        return false;
    }
    slot.held_by = None;
    true
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

fn push_sample(site: &mut SiteState, end: i64, output: usize, outputs: usize, sample: Sample) {
    if !site.computes(output, end) {
        return;
    }
    let day = site.day_mut(end, outputs);
    let slot = &mut day.slots[output];
    if day.emitted {
        slot.dirty = true;
    }
    slot.pending.push(sample);
}

fn window_of(end: i64) -> Window {
    Window {
        start_ms: end - DAY_MS,
        end_ms: end,
    }
}

fn late_rejected_record(
    reading: &Reading<'_>,
    end: i64,
    watermark: i64,
    policy: &LatenessPolicy,
) -> OutRecord {
    OutRecord {
        topic: OutTopic::LateRejected,
        key: Some(reading.site.to_string()),
        value: json!({
            "site": reading.site,
            "sensor": reading.sensor.name(),
            "ts": format_ts(reading.ts_ms),
            "value": reading.value,
            "watermark": format_ts(watermark),
            "reason": format!(
                "its day ended {} and the site's watermark {} is beyond the allowed lateness of {} ms",
                format_ts(end), format_ts(watermark), policy.allowed_lateness_ms
            ),
        })
        .to_string(),
    }
}
