//! `daily-diff`: a cumulative meter's reading at the window's end minus its reading at the
//! window's start (SPEC: AggDayDiff). Asks the host for the sample stamped exactly at the
//! window's start (`includes-window-start`); every other sample is ignored. No value unless
//! both readings are there. When one instant has several readings, the last one folded wins.
//!
//! Accumulator (state version 1, 17 bytes, little-endian): flags `u8` (bit 0: start seen,
//! bit 1: end seen), start reading `f64`, end reading `f64`.

#![cfg_attr(target_arch = "wasm32", no_std)]
extern crate alloc;
include!("../../guest_runtime.rs");

use alloc::{format, string::String, vec, vec::Vec};

wit_bindgen::generate!({ world: "aggregation", path: "../../wit" });

use exports::iot::aggregation::fold::{Guest, PluginInfo, Sample, Window};

const STATE_LEN: usize = 17;
const START_SEEN: u8 = 1;
const END_SEEN: u8 = 2;
const START: usize = 1;
const END: usize = 9;

fn check(state: &[u8]) -> Result<(), String> {
    if state.len() != STATE_LEN {
        return Err(format!(
            "daily-diff: accumulator of {} bytes, expected {STATE_LEN}",
            state.len()
        ));
    }
    Ok(())
}

fn reading(state: &[u8], at: usize) -> f64 {
    f64::from_le_bytes(state[at..at + 8].try_into().unwrap())
}

struct DailyDiff;

impl Guest for DailyDiff {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "daily-diff".into(),
            state_version: 1,
            includes_window_start: true,
            min_inputs: 1,
            max_inputs: 1,
        }
    }

    fn init(_: Vec<(String, String)>, _: u32, _: Window) -> Result<Vec<u8>, String> {
        Ok(vec![0; STATE_LEN])
    }

    fn fold(mut state: Vec<u8>, window: Window, samples: Vec<Sample>) -> Result<Vec<u8>, String> {
        check(&state)?;
        for sample in &samples {
            let (flag, at) = if sample.ts_ms == window.start_ms {
                (START_SEEN, START)
            } else if sample.ts_ms == window.end_ms {
                (END_SEEN, END)
            } else {
                continue;
            };
            state[0] |= flag;
            state[at..at + 8].copy_from_slice(&sample.value.to_le_bytes());
        }
        Ok(state)
    }

    fn finish(state: Vec<u8>, _: Window) -> Result<Option<f64>, String> {
        check(&state)?;
        let both = state[0] & (START_SEEN | END_SEEN) == START_SEEN | END_SEEN;
        Ok(both.then(|| reading(&state, END) - reading(&state, START)))
    }
}

export!(DailyDiff);
