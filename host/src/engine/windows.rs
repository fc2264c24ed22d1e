//! Day windows of one site: folding pending samples through the plugins, finishing due
//! days, recomputing derived outputs, and emitting values.

use iot_protocol::time::{format_ts, DAY_MS};
use serde_json::json;

use super::site::{DayState, SiteState, Slot};
use super::tenant::VersionId;
use super::{Engine, OutRecord, OutTopic, StoredSample};
use crate::pipeline::InputSource;
use crate::plugin::{PluginError, PluginInstance, Sample, Window};
use iot_protocol::Kind;

impl Engine {
    pub(super) fn refresh_site(&mut self, name: &str) {
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
            // Alarms the folds raised leave with this batch, day by day in fold order.
            self.emit_alarms(name, &mut site);
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
    pub(super) fn fold_pending(
        &mut self,
        name: &str,
        site: &SiteState,
        end: i64,
        day: &mut DayState,
    ) {
        for output in 0..day.slots.len() {
            self.fold_slot(name, site.tenant, end, output, day);
        }
    }

    /// Folds a slot's pending samples with the build the swap rules give it. A failure
    /// holds the window (its samples stay pending) until another build is deployed.
    pub(super) fn fold_slot(
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
                let t_version = t.version_mut(version);
                t_version.failures_in_a_row = 0;
                if spec.kind == Kind::Alarm {
                    let raised = t_version.instance.take_alarms();
                    self.raised.extend(raised.map(|alarm| (output, alarm)));
                }
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
    pub(super) fn emit_day(
        &mut self,
        name: &str,
        site: &mut SiteState,
        end: i64,
        day: &mut DayState,
    ) {
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
            if pipeline.outputs[output].kind == Kind::Alarm {
                // Alarms leave as they are raised (fold_slot); there is no value per day.
                day.slots[output].dirty = false;
                continue;
            }
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

    pub(super) fn finish_slot(
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
    pub(super) fn compute_derived(
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
                    self.derived_samples
                        .push(Sample::new(position as u32, end, value));
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

    pub(super) fn emit(
        &mut self,
        site_name: &str,
        site: &mut SiteState,
        output: usize,
        end: i64,
        value: f64,
    ) {
        let spec = &self.tenants[site.tenant].pipeline.outputs[output];
        let series = self
            .series
            .output_series(site_name, site, output, spec, &mut self.effects);
        self.effects.samples.push(StoredSample {
            series,
            partition: site.partition,
            ts_ms: self.config.stamps.output_ts(end),
            value,
        });
        let key = self.series.key(series);
        let ts = self.config.stamps.output_ts(end);
        self.effects.records.push(OutRecord {
            topic: OutTopic::Aggregates,
            key: Some(format!("{key}@{ts}")),
            value: json!({
                "site": site_name,
                "sensor": spec.name,
                "kind": spec.kind.as_str(),
                "ts": format_ts(ts),
                "ts_ms": ts,
                "value": value,
            })
            .to_string(),
        });
        self.stats.outputs_emitted += 1;
    }
}

impl Engine {
    /// Emits the alarms in `self.raised` (raised by the rules of `site`'s outputs): a
    /// sample of the output's `Alarm` series at each alarm's instant, and a record on the
    /// alarms topic keyed by series and instant (a replayed alarm has the same key).
    fn emit_alarms(&mut self, site_name: &str, site: &mut SiteState) {
        if self.raised.is_empty() {
            return;
        }
        let pipeline = self.tenants[site.tenant].pipeline.clone();
        let mut raised = std::mem::take(&mut self.raised);
        for (output, alarm) in raised.drain(..) {
            let spec = &pipeline.outputs[output];
            let series =
                self.series
                    .output_series(site_name, site, output, spec, &mut self.effects);
            self.effects.samples.push(StoredSample {
                series,
                partition: site.partition,
                ts_ms: alarm.ts_ms,
                value: alarm.value,
            });
            let key = self.series.key(series);
            self.effects.records.push(OutRecord {
                topic: OutTopic::Alarms,
                key: Some(format!("{key}@{}", alarm.ts_ms)),
                value: json!({
                    "site": site_name,
                    "rule": spec.name,
                    "plugin": spec.plugin,
                    "kind": "Alarm",
                    "ts": format_ts(alarm.ts_ms),
                    "ts_ms": alarm.ts_ms,
                    "value": alarm.value,
                    "evidence": alarm.evidence,
                })
                .to_string(),
            });
            self.stats.alarms_raised += 1;
        }
        self.raised = raised;
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

fn window_of(end: i64) -> Window {
    Window {
        start_ms: end - DAY_MS,
        end_ms: end,
    }
}
