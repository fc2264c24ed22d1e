//! `max`: the largest value a window received (e.g. a day's peak temperature). No sample,
//! no value. Of equal values the first folded is kept, so `-0.0` and `0.0` cannot make the
//! result depend on how the host batches the samples.
//!
//! Accumulator (state version 1, 9 bytes, little-endian): seen `u8` (0 or 1), max `f64`.

#![cfg_attr(target_arch = "wasm32", no_std)]
extern crate alloc;
include!("../../guest_runtime.rs");

use alloc::{format, string::String, vec, vec::Vec};

wit_bindgen::generate!({ world: "aggregation", path: "../../wit" });

use exports::iot::aggregation::fold::{Guest, PluginInfo, Sample, Window};

const STATE_LEN: usize = 9;

fn read(state: &[u8]) -> Result<Option<f64>, String> {
    let state: &[u8; STATE_LEN] = state.try_into().map_err(|_| {
        format!(
            "max: accumulator of {} bytes, expected {STATE_LEN}",
            state.len()
        )
    })?;
    let max = f64::from_le_bytes(state[1..].try_into().unwrap());
    match state[0] {
        0 => Ok(None),
        1 => Ok(Some(max)),
        flag => Err(format!("max: accumulator flag {flag}, expected 0 or 1")),
    }
}

struct Max;

impl Guest for Max {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "max".into(),
            state_version: 1,
            includes_window_start: false,
            min_inputs: 1,
            max_inputs: 1,
        }
    }

    fn init(_: Vec<(String, String)>, _: u32, _: Window) -> Result<Vec<u8>, String> {
        Ok(vec![0; STATE_LEN]) // nothing seen yet
    }

    fn fold(mut state: Vec<u8>, _: Window, samples: Vec<Sample>) -> Result<Vec<u8>, String> {
        let mut max = read(&state)?;
        for sample in &samples {
            if max.is_none_or(|m| sample.value > m) {
                max = Some(sample.value);
            }
        }
        if let Some(max) = max {
            state[0] = 1;
            state[1..].copy_from_slice(&max.to_le_bytes());
        }
        Ok(state)
    }

    fn finish(state: Vec<u8>, _: Window) -> Result<Option<f64>, String> {
        read(&state)
    }
}

export!(Max);
