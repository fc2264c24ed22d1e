//! A tenant inside the engine: its pipeline, the plugin builds its windows use, and the
//! rules for switching to a new build or a new pipeline while windows are open.
//!
//! # What happens to open windows at a swap
//!
//! A new build of a plugin (same output definition, new `.wasm`):
//! - **Same `state-version`**: the accumulators of open windows are carried over unchanged
//!   and the new build folds and finishes them from the swap on. Every reading is folded
//!   exactly once, the part before the swap by the old build, the rest by the new one.
//! - **Different `state-version`**: the new build could not read the old accumulators, so
//!   every window open at the swap is finished by the build that opened it (it stays loaded,
//!   and is archived with the checkpoints for restarts); windows that open after the swap
//!   use the new build.
//! - A window **held** because a build failed on it (see below) is retried by the new build:
//!   with the old accumulator if the state versions match, from its held samples alone if
//!   the failure came before any accumulator existed; otherwise it stays held.
//!
//! A pipeline edit, output by output (matched by `name:kind`):
//! - **unchanged** (same plugin, inputs, parameters and unit, and every upstream output
//!   unchanged): keeps its windows;
//! - **removed**: its windows are dropped; what it stored stays in Redis;
//! - **added or redefined**: computes the windows that start after the edit (per site:
//!   after the newest reading seen), because windows already open would miss the readings
//!   that came before. Days already stored keep their values.
//!
//! Days already emitted are not re-emitted by a swap; they are emitted again, as always,
//! when a late reading changes them (or when a held window is resolved).
//!
//! # Failures
//!
//! A build that fails on a window (trap, fuel, memory, error, non-finite value) holds that
//! window: no value, samples kept, one `plugin-errors` record. After
//! [`QUARANTINE_AFTER`] failures in a row a build is quarantined: it is not called again,
//! and every window that needs it is held, so a broken plugin costs its tenant at most a
//! few calls' worth of fuel. Deploying another build lifts it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::pipeline::{InputSource, Output, Pipeline};
use crate::plugin::{LoadedPlugin, PluginError, PluginHost, PluginInstance};
use crate::tenant::{SiteMatcher, TenantBuild};

/// Index of a plugin build in its tenant's version table; never reused.
pub type VersionId = u32;

/// Failures in a row after which a build is no longer called.
pub const QUARANTINE_AFTER: u32 = 3;

/// One build of a plugin, instantiated for one tenant.
pub struct PluginVersion {
    pub plugin: LoadedPlugin,
    pub instance: PluginInstance,
    pub failures_in_a_row: u32,
    pub quarantined: bool,
}

impl PluginVersion {
    fn new(tenant: &str, plugin: LoadedPlugin) -> Result<PluginVersion, PluginError> {
        let mut instance = plugin.instantiate()?;
        instance.set_meter(crate::metrics::global().plugin_meter(tenant, plugin.name()));
        Ok(PluginVersion {
            instance,
            plugin,
            failures_in_a_row: 0,
            quarantined: false,
        })
    }

    pub fn state_version(&self) -> u32 {
        self.plugin.info().state_version
    }
}

/// Everything the engine keeps about one tenant.
pub struct TenantState {
    pub name: String,
    pub sites: SiteMatcher,
    /// Compiles archived builds on restore, under this tenant's limits.
    pub plugin_host: PluginHost,
    pub pipeline: Arc<Pipeline>,
    /// `name:kind` of each output, as checkpoints name them.
    pub output_names: Vec<String>,
    /// The build each output uses for new windows.
    pub output_version: Vec<VersionId>,
    /// Whether each output's current build also folds a reading at a day's start instant
    /// into the next day.
    pub includes_window_start: Vec<bool>,
    versions: Vec<Option<PluginVersion>>,
}

/// What applying a build changed, for the log.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SwapReport {
    /// Outputs whose plugin build changed, with `true` when open windows were carried over
    /// (same state version) and `false` when they finish on the old build.
    pub swapped: Vec<(String, bool)>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub redefined: Vec<String>,
    /// Plugin builds the tenant holds after the swap (old builds still finishing windows
    /// included).
    pub builds_loaded: usize,
}

/// How the outputs of the old pipeline map onto the new one.
pub struct OutputRemap {
    /// For each new output: the old output whose windows it keeps.
    pub kept_from: Vec<Option<usize>>,
    pub outputs: usize,
}

impl TenantState {
    pub fn new(
        name: String,
        sites: SiteMatcher,
        plugin_host: PluginHost,
        build: &TenantBuild,
        new_builds: &mut Vec<LoadedPlugin>,
    ) -> anyhow::Result<TenantState> {
        build.check()?;
        let mut tenant = TenantState {
            name,
            sites,
            plugin_host,
            pipeline: build.pipeline.clone(),
            output_names: Vec::new(),
            output_version: Vec::new(),
            includes_window_start: Vec::new(),
            versions: Vec::new(),
        };
        tenant.bind_outputs(build, new_builds)?;
        Ok(tenant)
    }

    pub fn version(&self, id: VersionId) -> &PluginVersion {
        self.versions[id as usize]
            .as_ref()
            .expect("a version in use is never collected")
    }

    pub fn version_mut(&mut self, id: VersionId) -> &mut PluginVersion {
        self.versions[id as usize]
            .as_mut()
            .expect("a version in use is never collected")
    }

    /// The build that folds and finishes a window of `output` whose accumulator was written
    /// by `written_by`: the output's current build when the state versions agree (or no
    /// accumulator exists yet), else the one that wrote it.
    pub fn resolve(&self, output: usize, written_by: Option<VersionId>) -> VersionId {
        let current = self.output_version[output];
        match written_by {
            None => current,
            Some(v) if v == current => v,
            Some(v) if self.version(v).state_version() == self.version(current).state_version() => {
                current
            }
            Some(v) => v,
        }
    }

    /// The version of a build, loading it as a new version when the tenant does not have it.
    fn version_of(
        &mut self,
        plugin: &LoadedPlugin,
        new_builds: &mut Vec<LoadedPlugin>,
    ) -> Result<VersionId, PluginError> {
        if let Some(id) = self.find_build(plugin.hash()) {
            return Ok(id);
        }
        self.versions
            .push(Some(PluginVersion::new(&self.name, plugin.clone())?));
        new_builds.push(plugin.clone());
        Ok((self.versions.len() - 1) as VersionId)
    }

    pub fn find_build(&self, hash: &str) -> Option<VersionId> {
        self.versions
            .iter()
            .position(|v| v.as_ref().is_some_and(|v| v.plugin.hash() == hash))
            .map(|i| i as VersionId)
    }

    /// Adds a build from the archive (a restart that finds windows of an older build).
    pub fn install_archived(&mut self, bytes: &[u8], hash: &str) -> Result<VersionId, PluginError> {
        let name = format!("archived-{}", &hash[..12.min(hash.len())]);
        let plugin = self.plugin_host.load_bytes(&name, bytes)?;
        let mut ignored = Vec::new();
        self.version_of(&plugin, &mut ignored)
    }

    fn bind_outputs(
        &mut self,
        build: &TenantBuild,
        new_builds: &mut Vec<LoadedPlugin>,
    ) -> anyhow::Result<()> {
        let mut output_version = Vec::with_capacity(build.pipeline.outputs.len());
        for output in &build.pipeline.outputs {
            let plugin = &build.plugins[&output.plugin];
            output_version.push(self.version_of(plugin, new_builds)?);
        }
        self.includes_window_start = output_version
            .iter()
            .map(|&v| self.version(v).plugin.info().includes_window_start)
            .collect();
        self.output_version = output_version;
        self.output_names = build
            .pipeline
            .outputs
            .iter()
            .map(|o| format!("{}:{}", o.name, o.kind))
            .collect();
        self.pipeline = build.pipeline.clone();
        Ok(())
    }

    /// Switches to a new build; returns how outputs map from the old pipeline to the new
    /// one (the caller moves the sites' windows accordingly) and what changed.
    pub fn apply(
        &mut self,
        build: &TenantBuild,
        new_builds: &mut Vec<LoadedPlugin>,
    ) -> anyhow::Result<(OutputRemap, SwapReport)> {
        build.check()?;
        let old = self.pipeline.clone();
        let old_versions = self.output_version.clone();
        let kept_from = unchanged_outputs(&old, &build.pipeline);
        self.bind_outputs(build, new_builds)?;
        let mut report = SwapReport::default();
        for (new, kept) in kept_from.iter().enumerate() {
            let name = self.output_names[new].clone();
            match kept {
                Some(old_index) => {
                    let (before, after) = (old_versions[*old_index], self.output_version[new]);
                    if before != after {
                        let carried = self.version(before).state_version()
                            == self.version(after).state_version();
                        report.swapped.push((name, carried));
                    }
                }
                None if old
                    .outputs
                    .iter()
                    .any(|o| same_identity(o, &build.pipeline.outputs[new])) =>
                {
                    report.redefined.push(name)
                }
                None => report.added.push(name),
            }
        }
        for o in &old.outputs {
            if !build.pipeline.outputs.iter().any(|n| same_identity(o, n)) {
                report.removed.push(format!("{}:{}", o.name, o.kind));
            }
        }
        let outputs = build.pipeline.outputs.len();
        Ok((OutputRemap { kept_from, outputs }, report))
    }

    /// Drops the builds nothing refers to any more (`in_use`: versions still named by open
    /// windows); the outputs' current builds always stay.
    pub fn collect_versions(&mut self, in_use: &HashSet<VersionId>) {
        for (id, slot) in self.versions.iter_mut().enumerate() {
            let id = id as VersionId;
            if slot.is_some() && !in_use.contains(&id) && !self.output_version.contains(&id) {
                *slot = None;
            }
        }
    }

    /// Builds currently loaded, for the log.
    pub fn loaded_versions(&self) -> usize {
        self.versions.iter().filter(|v| v.is_some()).count()
    }
}

fn same_identity(a: &Output, b: &Output) -> bool {
    a.name == b.name && a.kind == b.kind
}

/// For each output of `new`: the output of `old` with the same identity and the same
/// definition, whose upstream outputs are unchanged too.
fn unchanged_outputs(old: &Pipeline, new: &Pipeline) -> Vec<Option<usize>> {
    let mut kept: Vec<Option<usize>> = vec![None; new.outputs.len()];
    // Plain outputs first, then derived ones in dependency order, so upstream answers exist.
    let order: Vec<usize> = (0..new.outputs.len())
        .filter(|&o| !new.outputs[o].is_derived())
        .chain(new.derived_order.iter().copied())
        .collect();
    let by_identity: HashMap<(&str, iot_protocol::Kind), usize> = old
        .outputs
        .iter()
        .enumerate()
        .map(|(i, o)| ((o.name.as_str(), o.kind), i))
        .collect();
    for o in order {
        let spec = &new.outputs[o];
        let Some(&i) = by_identity.get(&(spec.name.as_str(), spec.kind)) else {
            continue;
        };
        let before = &old.outputs[i];
        let same_inputs = before.inputs.len() == spec.inputs.len()
            && before
                .inputs
                .iter()
                .zip(&spec.inputs)
                .all(|(a, b)| match (a, b) {
                    (InputSource::Sensor(x), InputSource::Sensor(y)) => x == y,
                    (InputSource::Output(x), InputSource::Output(y)) => kept[*y] == Some(*x),
                    _ => false,
                });
        if same_inputs
            && before.plugin == spec.plugin
            && before.params == spec.params
            && before.unit == spec.unit
        {
            kept[o] = Some(i);
        }
    }
    kept
}
