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

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use iot_protocol::record::{parse_record, ParseError, Reading};
use iot_protocol::time::{format_ts, interval_end_window_end, DAY_MS};
use iot_protocol::{Kind, SeriesName};
use serde_json::json;

pub use checkpoint::PartitionCheckpoint;
pub use effects::{Effects, OutRecord, OutTopic, SeriesDef, SeriesId, StoredSample};
pub use lateness::{Lateness, LatenessPolicy};

use crate::pipeline::{InputSource, Pipeline};
use crate::plugin::{LoadedPlugin, PluginError, PluginInstance, Sample, Window};
use series::SeriesRegistry;
use site::{DayState, SiteState};

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

/// A plugin instance shared by every output that uses the same plugin.
struct PluginSlot {
    instance: PluginInstance,
    includes_window_start: bool,
}

struct PartitionState {
    next_offset: i64,
    /// The offset moved in the current batch: the partition needs a new checkpoint.
    moved: bool,
}

pub struct Engine {
    config: EngineConfig,
    pipeline: Arc<Pipeline>,
    plugins: Vec<PluginSlot>,
    /// For each output: index into `plugins`.
    output_plugin: Vec<usize>,
    sites: HashMap<String, SiteState>,
    partitions: HashMap<i32, PartitionState>,
    series: SeriesRegistry,
    effects: Effects,
    stats: Stats,
    /// Reused buffer for derived outputs' samples.
    derived_samples: Vec<Sample>,
}

impl Engine {
    /// `plugins` maps plugin names (as the pipeline uses them) to loaded plugins.
    pub fn new(
        config: EngineConfig,
        pipeline: Arc<Pipeline>,
        plugins: &HashMap<String, LoadedPlugin>,
    ) -> anyhow::Result<Engine> {
        let mut slots: Vec<PluginSlot> = Vec::new();
        let mut by_name: HashMap<&str, usize> = HashMap::new();
        let mut output_plugin = Vec::with_capacity(pipeline.outputs.len());
        for output in &pipeline.outputs {
            let index = match by_name.get(output.plugin.as_str()) {
                Some(&i) => i,
                None => {
                    let loaded = plugins.get(&output.plugin).ok_or_else(|| {
                        anyhow::anyhow!(
                            "output {}:{} uses plugin {:?}, which is not in the plugin folder \
                             (expected {}.wasm; build plugins with scripts/build-plugins)",
                            output.name,
                            output.kind,
                            output.plugin,
                            output.plugin
                        )
                    })?;
                    check_arity(loaded, output.inputs.len(), &output.name, output.kind)?;
                    slots.push(PluginSlot {
                        instance: loaded.instantiate()?,
                        includes_window_start: loaded.info().includes_window_start,
                    });
                    by_name.insert(output.plugin.as_str(), slots.len() - 1);
                    slots.len() - 1
                }
            };
            output_plugin.push(index);
        }
        Ok(Engine {
            series: SeriesRegistry::new(config.key_prefix.clone()),
            config,
            pipeline,
            plugins: slots,
            output_plugin,
            sites: HashMap::new(),
            partitions: HashMap::new(),
            effects: Effects::default(),
            stats: Stats::default(),
            derived_samples: Vec::new(),
        })
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Whether the partition's state is in memory (else the caller restores it first).
    pub fn knows_partition(&self, partition: i32) -> bool {
        self.partitions.contains_key(&partition)
    }

    /// Installs a partition's state from its checkpoint, or an empty state starting at the
    /// consumer's position when there is none.
    pub fn restore_partition(
        &mut self,
        partition: i32,
        checkpoint: Option<PartitionCheckpoint>,
    ) -> anyhow::Result<()> {
        let outputs = self.pipeline.outputs.len();
        let next_offset = match checkpoint {
            Some(cp) => {
                for (name, snapshot) in &cp.sites {
                    self.sites.insert(
                        name.clone(),
                        SiteState::restore(partition, outputs, snapshot)?,
                    );
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

    /// Forgets partitions handed to another instance; their state lives on in the store.
    pub fn forget_partitions(&mut self, partitions: &[i32]) {
        self.sites.retain(|_, s| !partitions.contains(&s.partition));
        for p in partitions {
            self.partitions.remove(p);
        }
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
            Ok(reading) => self.accept(record.partition, reading),
            Err(error) => self.dead_letter(record, &error),
        }
        self.config.default_site = default_site;
    }

    fn accept(&mut self, partition: i32, reading: Reading<'_>) {
        let outputs = self.pipeline.outputs.len();
        if !self.sites.contains_key(reading.site.as_ref()) {
            self.sites
                .insert(reading.site.to_string(), SiteState::new(partition, outputs));
        }
        let site_name = reading.site.as_ref();
        let site = self.sites.get_mut(site_name).expect("inserted above");
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
        for &(output, input) in &self.pipeline.routes_by_sensor[reading.sensor.index()] {
            let sample = Sample {
                input,
                ts_ms: reading.ts_ms,
                value: reading.value,
            };
            push_sample(site, end, output, outputs, sample);
            // A reading at a day's start instant also opens the next day for plugins that
            // need both ends (daily difference of a cumulative meter).
            if reading.ts_ms == end
                && self.plugins[self.output_plugin[output]].includes_window_start
            {
                push_sample(site, end + DAY_MS, output, outputs, sample);
            }
        }
    }

    fn dead_letter(&mut self, record: &SourceRecord, error: &ParseError) {
        *self
            .stats
            .dead_letters
            .entry(error.reason.as_str())
            .or_default() += 1;
        const MAX_PAYLOAD_ECHO: usize = 2048;
        let echo = &record.payload[..record.payload.len().min(MAX_PAYLOAD_ECHO)];
        let value = json!({
            "reason": error.reason.as_str(),
            "detail": error.detail,
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
        // Only partitions whose offset moved get a new checkpoint (a site is touched only by
        // a record that moved its partition's offset).
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
        PartitionCheckpoint {
            partition,
            next_offset: self.partitions.get(&partition).map_or(0, |p| p.next_offset),
            sites: self
                .sites
                .iter()
                .filter(|(_, s)| s.partition == partition)
                .map(|(n, s)| (n.clone(), s.snapshot()))
                .collect(),
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
                self.fold_pending(name, end, &mut day);
            }
            if !self.config.lateness.retains(end, watermark) {
                continue; // evicted: no reading can change this day any more
            }
            site.days.insert(end, day);
        }
        self.sites.insert(name.to_owned(), site);
    }

    /// Folds the pending samples of every slot of a day, without finishing.
    fn fold_pending(&mut self, site: &str, end: i64, day: &mut DayState) {
        for output in 0..day.slots.len() {
            self.fold_slot(site, end, output, day);
        }
    }

    fn fold_slot(&mut self, site: &str, end: i64, output: usize, day: &mut DayState) {
        let slot = &mut day.slots[output];
        if slot.pending.is_empty() {
            return;
        }
        if slot.failed {
            slot.pending.clear();
            return;
        }
        let window = window_of(end);
        let plugin = &mut self.plugins[self.output_plugin[output]].instance;
        let spec = &self.pipeline.outputs[output];
        let result = (|| -> Result<(), PluginError> {
            if slot.state.is_none() {
                slot.state = Some(plugin.init(&spec.params, spec.inputs.len() as u32, window)?);
            }
            plugin.fold(
                slot.state.as_mut().expect("initialised above"),
                window,
                &slot.pending,
            )
        })();
        slot.pending.clear();
        if let Err(error) = result {
            slot.failed = true;
            slot.state = None;
            self.plugin_error(site, output, end, &error);
        }
    }

    /// Emits every output of a due day: first the plugins fed by readings, then the derived
    /// outputs in dependency order, recomputing those whose inputs changed.
    fn emit_day(&mut self, name: &str, site: &mut SiteState, end: i64, day: &mut DayState) {
        let first_time = !day.emitted;
        let outputs = self.pipeline.outputs.len();
        let mut changed = vec![false; outputs];
        for output in 0..outputs {
            if self.pipeline.outputs[output].is_derived() {
                continue;
            }
            let slot = &day.slots[output];
            if !(first_time || slot.dirty || !slot.pending.is_empty()) {
                continue;
            }
            self.fold_slot(name, end, output, day);
            let value = self.finish_slot(name, end, output, day);
            day.slots[output].dirty = false;
            day.slots[output].value = value;
            if let Some(value) = value {
                self.emit(name, site, output, end, value);
            }
            changed[output] = true;
        }
        let order = self.pipeline.derived_order.clone();
        for output in order {
            let inputs_changed = self.pipeline.outputs[output]
                .inputs
                .iter()
                .any(|i| matches!(i, InputSource::Output(u) if changed[*u]));
            if !(first_time || inputs_changed) {
                continue;
            }
            let value = self.compute_derived(name, end, output, day);
            day.slots[output].value = value;
            if let Some(value) = value {
                self.emit(name, site, output, end, value);
            }
            changed[output] = true;
        }
        day.emitted = true;
    }

    fn finish_slot(
        &mut self,
        site: &str,
        end: i64,
        output: usize,
        day: &mut DayState,
    ) -> Option<f64> {
        let slot = &mut day.slots[output];
        if slot.failed {
            return None;
        }
        let state = slot.state.as_ref()?;
        let plugin = &mut self.plugins[self.output_plugin[output]].instance;
        match plugin.finish(state, window_of(end)) {
            Ok(value) => value,
            Err(error) => {
                slot.failed = true;
                self.plugin_error(site, output, end, &error);
                None
            }
        }
    }

    /// A derived output is recomputed from scratch: one sample per input, each input's
    /// current value for the day. Missing inputs are left out; the plugin decides.
    fn compute_derived(
        &mut self,
        site: &str,
        end: i64,
        output: usize,
        day: &DayState,
    ) -> Option<f64> {
        let window = window_of(end);
        let spec = &self.pipeline.outputs[output];
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
        let plugin = &mut self.plugins[self.output_plugin[output]].instance;
        let result = (|| -> Result<Option<f64>, PluginError> {
            let mut state = plugin.init(&spec.params, spec.inputs.len() as u32, window)?;
            plugin.fold(&mut state, window, &self.derived_samples)?;
            plugin.finish(&state, window)
        })();
        match result {
            Ok(value) => value,
            Err(error) => {
                self.plugin_error(site, output, end, &error);
                None
            }
        }
    }

    fn emit(&mut self, site_name: &str, site: &mut SiteState, output: usize, end: i64, value: f64) {
        let spec = &self.pipeline.outputs[output];
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

    fn plugin_error(&mut self, site: &str, output: usize, end: i64, error: &PluginError) {
        let spec = &self.pipeline.outputs[output];
        tracing::warn!(site, output = %format!("{}:{}", spec.name, spec.kind), plugin = %spec.plugin, day_end = %format_ts(end), "plugin failed: {error}");
        self.stats.plugin_errors += 1;
        self.effects.records.push(OutRecord {
            topic: OutTopic::PluginErrors,
            key: Some(format!("{site}:{}:{}", spec.name, spec.kind)),
            value: json!({
                "site": site,
                "output": spec.name,
                "kind": spec.kind.as_str(),
                "plugin": spec.plugin,
                "window_end": format_ts(end),
                "error": error.to_string(),
            })
            .to_string(),
        });
    }

    /// Name of the series an output of a site is stored in (for tools and tests).
    pub fn output_series_name(&self, site: &str, output: usize) -> SeriesName {
        let spec = &self.pipeline.outputs[output];
        SeriesName::new(site, spec.name.clone(), spec.kind)
    }
}

fn push_sample(site: &mut SiteState, end: i64, output: usize, outputs: usize, sample: Sample) {
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

fn check_arity(plugin: &LoadedPlugin, inputs: usize, name: &str, kind: Kind) -> anyhow::Result<()> {
    let info = plugin.info();
    if (inputs as u32) < info.min_inputs || (inputs as u32) > info.max_inputs {
        anyhow::bail!(
            "output {name}:{kind} gives plugin {:?} {inputs} inputs, but it takes {} to {}",
            info.name,
            info.min_inputs,
            info.max_inputs
        );
    }
    Ok(())
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
