//! `night-count`: how many samples with a non-zero value (e.g. motion events of Mov1) a
//! window received at a time of day (UTC, `ts_ms` modulo 86 400 000) inside the half-open
//! range `[from, to)`. Parameters `from` and `to` are `"HH:MM"` (00:00 to 23:59), default
//! `"02:00"` and `"06:00"`; when `from` is later than `to` the range wraps past midnight
//! (`from = "22:00"`, `to = "06:00"`). A bad or unknown parameter, or `from == to`, makes
//! `init` fail. A window with samples but none counted is 0; with no sample, no value.
//!
//! Accumulator (state version 1, 24 bytes, little-endian): from `u32` and to `u32` (ms
//! since midnight), samples seen `u64`, samples counted `u64`.

#![cfg_attr(target_arch = "wasm32", no_std)]
extern crate alloc;
include!("../../guest_runtime.rs");

use alloc::{format, string::String, vec, vec::Vec};

wit_bindgen::generate!({ world: "aggregation", path: "../../wit" });

use exports::iot::aggregation::fold::{Guest, PluginInfo, Sample, Window};

const STATE_LEN: usize = 24;
const DAY_MS: i64 = 86_400_000;
const MINUTE_MS: u32 = 60_000;

struct State {
    from: u32,
    to: u32,
    seen: u64,
    counted: u64,
}

impl State {
    fn read(state: &[u8]) -> Result<State, String> {
        let state: &[u8; STATE_LEN] = state.try_into().map_err(|_| {
            format!(
                "night-count: accumulator of {} bytes, expected {STATE_LEN}",
                state.len()
            )
        })?;
        let u32_at = |at: usize| u32::from_le_bytes(state[at..at + 4].try_into().unwrap());
        let u64_at = |at: usize| u64::from_le_bytes(state[at..at + 8].try_into().unwrap());
        let s = State {
            from: u32_at(0),
            to: u32_at(4),
            seen: u64_at(8),
            counted: u64_at(16),
        };
        if s.from as i64 >= DAY_MS || s.to as i64 >= DAY_MS || s.from == s.to {
            return Err(format!(
                "night-count: accumulator holds a bad range [{}, {}) ms",
                s.from, s.to
            ));
        }
        Ok(s)
    }

    fn write(&self, state: &mut [u8]) {
        state[0..4].copy_from_slice(&self.from.to_le_bytes());
        state[4..8].copy_from_slice(&self.to.to_le_bytes());
        state[8..16].copy_from_slice(&self.seen.to_le_bytes());
        state[16..24].copy_from_slice(&self.counted.to_le_bytes());
    }

    fn in_range(&self, ts_ms: i64) -> bool {
        let time = ts_ms.rem_euclid(DAY_MS) as u32;
        if self.from < self.to {
            self.from <= time && time < self.to
        } else {
            time >= self.from || time < self.to
        }
    }
}

/// `"HH:MM"` → ms since midnight.
fn time_of_day(key: &str, text: &str) -> Result<u32, String> {
    let bad = || {
        format!("night-count: parameter {key} = {text:?} is not a time of day \"HH:MM\" (00:00 to 23:59)")
    };
    let b = text.as_bytes();
    if b.len() != 5 || b[2] != b':' || ![0, 1, 3, 4].iter().all(|&i| b[i].is_ascii_digit()) {
        return Err(bad());
    }
    let (hours, minutes) = (
        u32::from(b[0] - b'0') * 10 + u32::from(b[1] - b'0'),
        u32::from(b[3] - b'0') * 10 + u32::from(b[4] - b'0'),
    );
    if hours > 23 || minutes > 59 {
        return Err(bad());
    }
    Ok((hours * 60 + minutes) * MINUTE_MS)
}

struct NightCount;

impl Guest for NightCount {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "night-count".into(),
            state_version: 1,
            includes_window_start: false,
            min_inputs: 1,
            max_inputs: 1,
        }
    }

    fn init(params: Vec<(String, String)>, _: u32, _: Window) -> Result<Vec<u8>, String> {
        let (mut from, mut to) = ("02:00", "06:00");
        for (key, value) in &params {
            match key.as_str() {
                "from" => from = value,
                "to" => to = value,
                other => {
                    return Err(format!(
                        "night-count: unknown parameter {other:?} (it takes `from` and `to`, \"HH:MM\")"
                    ))
                }
            }
        }
        let range = State {
            from: time_of_day("from", from)?,
            to: time_of_day("to", to)?,
            seen: 0,
            counted: 0,
        };
        if range.from == range.to {
            return Err(format!(
                "night-count: parameters from = {from:?} and to = {to:?} are the same time, \
                 so the range [from, to) would be empty"
            ));
        }
        let mut state = vec![0; STATE_LEN];
        range.write(&mut state);
        Ok(state)
    }

    fn fold(mut state: Vec<u8>, _: Window, samples: Vec<Sample>) -> Result<Vec<u8>, String> {
        let mut s = State::read(&state)?;
        s.seen += samples.len() as u64;
        s.counted += samples
            .iter()
            .filter(|sample| sample.value != 0.0 && s.in_range(sample.ts_ms))
            .count() as u64;
        s.write(&mut state);
        Ok(state)
    }

    fn finish(state: Vec<u8>, _: Window) -> Result<Option<f64>, String> {
        let s = State::read(&state)?;
        Ok((s.seen > 0).then_some(s.counted as f64))
    }
}

export!(NightCount);
