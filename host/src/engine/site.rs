//! Per-site event-time state: the site's clock and its day windows, one slot per output of
//! the site's tenant.

use std::collections::BTreeMap;

use iot_protocol::time::DAY_MS;
use iot_protocol::Sensor;

use super::checkpoint::{DaySnapshot, SiteSnapshot, SlotSnapshot};
use super::effects::SeriesId;
use super::tenant::VersionId;
use crate::plugin::Sample;

/// One output's window for one day.
#[derive(Debug, Default, Clone)]
pub struct Slot {
    /// The plugin's accumulator; `None` until the first sample is folded.
    pub state: Option<Vec<u8>>,
    /// The plugin build that wrote `state` (see the swap rules in `tenant.rs`).
    pub version: Option<VersionId>,
    /// Samples waiting for the next fold call: flushed at the end of every batch, except
    /// while the window is held.
    pub pending: Vec<Sample>,
    /// The last value emitted for this day.
    pub value: Option<f64>,
    /// Set when new samples arrived after the day was emitted: re-emit at batch end.
    pub dirty: bool,
    /// The build that failed on this window. The window is held — its samples kept, no
    /// value — until another build of the plugin is deployed, which retries it.
    pub held_by: Option<VersionId>,
}

/// The windows of one day (D 00:00, D+1 00:00] of one site.
#[derive(Debug, Clone)]
pub struct DayState {
    pub emitted: bool,
    pub slots: Vec<Slot>,
}

impl DayState {
    pub fn new(outputs: usize) -> DayState {
        DayState {
            emitted: false,
            slots: vec![Slot::default(); outputs],
        }
    }

    pub fn needs_refresh(&self) -> bool {
        self.slots.iter().any(|s| s.dirty || !s.pending.is_empty())
    }
}

/// Everything the engine keeps about one site.
#[derive(Debug)]
pub struct SiteState {
    pub partition: i32,
    /// Index of the tenant that owns the site.
    pub tenant: usize,
    /// Newest reading time seen (the watermark before the out-of-orderness bound).
    pub newest_ts: i64,
    /// Day windows by their end instant.
    pub days: BTreeMap<i64, DayState>,
    /// Series ids of the per-sensor input series, by sensor index: raw, LateAccepted, LateRej.
    pub input_series: [[Option<SeriesId>; 3]; Sensor::COUNT],
    /// Series id of each output.
    pub output_series: Vec<Option<SeriesId>>,
    /// For each output: it computes only windows that start after this instant. `i64::MIN`
    /// except for outputs added or redefined while the site was running, whose windows open
    /// at that moment would miss the readings that came before.
    pub output_from: Vec<i64>,
    /// Touched in the current batch.
    pub touched: bool,
}

impl SiteState {
    pub fn new(partition: i32, tenant: usize, outputs: usize) -> SiteState {
        SiteState {
            partition,
            tenant,
            newest_ts: i64::MIN,
            days: BTreeMap::new(),
            input_series: [[None; 3]; Sensor::COUNT],
            output_series: vec![None; outputs],
            output_from: vec![i64::MIN; outputs],
            touched: false,
        }
    }

    pub fn day_mut(&mut self, end_ms: i64, outputs: usize) -> &mut DayState {
        self.days
            .entry(end_ms)
            .or_insert_with(|| DayState::new(outputs))
    }

    /// Whether `output` computes the day ending at `end_ms`.
    pub fn computes(&self, output: usize, end_ms: i64) -> bool {
        end_ms - DAY_MS > self.output_from[output]
    }

    /// The snapshot for a checkpoint; `outputs` names the tenant's outputs, `build` gives
    /// the checkpoint's index of a plugin build.
    pub fn snapshot(
        &self,
        outputs: &[String],
        build: &mut impl FnMut(VersionId) -> u32,
    ) -> SiteSnapshot {
        SiteSnapshot {
            newest_ts: self.newest_ts,
            outputs: outputs.to_vec(),
            output_from: self
                .output_from
                .iter()
                .enumerate()
                .filter(|(_, &from)| from != i64::MIN)
                .map(|(o, &from)| (o as u32, from))
                .collect(),
            days: self
                .days
                .iter()
                .map(|(&end_ms, day)| DaySnapshot {
                    end_ms,
                    emitted: day.emitted,
                    slots: day
                        .slots
                        .iter()
                        .enumerate()
                        .filter(|(_, s)| {
                            s.state.is_some() || s.value.is_some() || s.held_by.is_some()
                        })
                        .map(|(o, s)| SlotSnapshot {
                            output: o as u32,
                            state: s.state.clone(),
                            build: s.version.map(&mut *build),
                            value: s.value,
                            held_by: s.held_by.map(&mut *build),
                            pending: s.held_by.map(|_| encode_samples(&s.pending)),
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    /// Rebuilds a site from its snapshot. `output_index` maps the snapshot's output names to
    /// the tenant's current outputs (`None`: the output is gone, its windows are dropped);
    /// `build` maps the checkpoint's build indices to the engine's versions.
    pub fn restore(
        partition: i32,
        tenant: usize,
        outputs: usize,
        snapshot: &SiteSnapshot,
        output_index: impl Fn(&str) -> Option<usize>,
        build: impl Fn(u32) -> Option<VersionId>,
    ) -> anyhow::Result<SiteState> {
        let mut site = SiteState::new(partition, tenant, outputs);
        site.newest_ts = snapshot.newest_ts;
        let map: Vec<Option<usize>> = snapshot.outputs.iter().map(|n| output_index(n)).collect();
        let current = |o: u32| map.get(o as usize).copied().flatten();
        for &(o, from) in &snapshot.output_from {
            if let Some(o) = current(o) {
                site.output_from[o] = from;
            }
        }
        for day in &snapshot.days {
            let mut state = DayState::new(outputs);
            state.emitted = day.emitted;
            for slot in &day.slots {
                let Some(o) = current(slot.output) else {
                    continue;
                };
                let target = &mut state.slots[o];
                target.state = slot.state.clone();
                target.version = slot.build.and_then(&build);
                target.value = slot.value;
                target.held_by = slot.held_by.and_then(&build);
                if let Some(pending) = &slot.pending {
                    target.pending = decode_samples(pending)?;
                }
            }
            site.days.insert(day.end_ms, state);
        }
        Ok(site)
    }
}

const SAMPLE_BYTES: usize = 20;

fn encode_samples(samples: &[Sample]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(samples.len() * SAMPLE_BYTES);
    for s in samples {
        bytes.extend_from_slice(&s.input.to_le_bytes());
        bytes.extend_from_slice(&s.ts_ms.to_le_bytes());
        bytes.extend_from_slice(&s.value.to_le_bytes());
    }
    bytes
}

#[allow(clippy::manual_is_multiple_of)] // u64::is_multiple_of needs Rust 1.87; the workspace supports 1.85
fn decode_samples(bytes: &[u8]) -> anyhow::Result<Vec<Sample>> {
    if bytes.len() % SAMPLE_BYTES != 0 {
        anyhow::bail!(
            "held samples of {} bytes in a checkpoint: not a whole number of samples",
            bytes.len()
        );
    }
    Ok(bytes
        .chunks_exact(SAMPLE_BYTES)
        .map(|c| {
            Sample::new(
                u32::from_le_bytes(c[0..4].try_into().unwrap()),
                i64::from_le_bytes(c[4..12].try_into().unwrap()),
                f64::from_le_bytes(c[12..20].try_into().unwrap()),
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_samples_survive_a_round_trip_bit_for_bit() {
        let samples = vec![
            Sample::new(0, 1_577_836_800_000, 0.1 + 0.2),
            Sample::new(3, -5, f64::MIN_POSITIVE),
        ];
        let back = decode_samples(&encode_samples(&samples)).unwrap();
        assert_eq!(back.len(), 2);
        for (a, b) in samples.iter().zip(&back) {
            assert_eq!(
                (a.input, a.ts_ms, a.value.to_bits()),
                (b.input, b.ts_ms, b.value.to_bits())
            );
        }
    }
}
