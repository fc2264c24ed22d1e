//! Per-site event-time state: the site's clock and its day windows, one slot per output.

use std::collections::BTreeMap;

use base64::Engine as _;
use iot_protocol::Sensor;

use super::checkpoint::{DaySnapshot, SiteSnapshot, SlotSnapshot};
use super::effects::SeriesId;
use crate::plugin::Sample;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// One output's window for one day.
#[derive(Debug, Default, Clone)]
pub struct Slot {
    /// The plugin's accumulator; `None` until the first sample is folded.
    pub state: Option<Vec<u8>>,
    /// Samples waiting for the next fold call (flushed at the end of every batch).
    pub pending: Vec<Sample>,
    /// The last value emitted for this day.
    pub value: Option<f64>,
    /// Set when new samples arrived after the day was emitted: re-emit at batch end.
    pub dirty: bool,
    /// The plugin failed on this window; it yields no value.
    pub failed: bool,
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
    /// Newest reading time seen (the watermark before the out-of-orderness bound).
    pub newest_ts: i64,
    /// Day windows by their end instant.
    pub days: BTreeMap<i64, DayState>,
    /// Series ids of the per-sensor input series, by sensor index: raw, LateAccepted, LateRej.
    pub input_series: [[Option<SeriesId>; 3]; Sensor::COUNT],
    /// Series id of each output.
    pub output_series: Vec<Option<SeriesId>>,
    /// Touched in the current batch.
    pub touched: bool,
}

impl SiteState {
    pub fn new(partition: i32, outputs: usize) -> SiteState {
        SiteState {
            partition,
            newest_ts: i64::MIN,
            days: BTreeMap::new(),
            input_series: [[None; 3]; Sensor::COUNT],
            output_series: vec![None; outputs],
            touched: false,
        }
    }

    pub fn day_mut(&mut self, end_ms: i64, outputs: usize) -> &mut DayState {
        self.days
            .entry(end_ms)
            .or_insert_with(|| DayState::new(outputs))
    }

    pub fn snapshot(&self) -> SiteSnapshot {
        SiteSnapshot {
            newest_ts: self.newest_ts,
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
                        .filter(|(_, s)| s.state.is_some() || s.value.is_some() || s.failed)
                        .map(|(o, s)| SlotSnapshot {
                            output: o as u32,
                            state: s.state.as_ref().map(|b| B64.encode(b)),
                            value: s.value,
                            failed: s.failed,
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    pub fn restore(
        partition: i32,
        outputs: usize,
        snapshot: &SiteSnapshot,
    ) -> anyhow::Result<SiteState> {
        let mut site = SiteState::new(partition, outputs);
        site.newest_ts = snapshot.newest_ts;
        for day in &snapshot.days {
            let mut state = DayState::new(outputs);
            state.emitted = day.emitted;
            for slot in &day.slots {
                let target = state.slots.get_mut(slot.output as usize).ok_or_else(|| {
                    anyhow::anyhow!(
                        "checkpoint names output #{} but the pipeline has {outputs}: \
                         the pipeline changed while the host was down; clear the checkpoint keys to start over",
                        slot.output
                    )
                })?;
                target.state = slot.state.as_deref().map(|s| B64.decode(s)).transpose()?;
                target.value = slot.value;
                target.failed = slot.failed;
            }
            site.days.insert(day.end_ms, state);
        }
        Ok(site)
    }
}
