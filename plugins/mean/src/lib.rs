//! `mean`: the mean of a window's values: their sum, added in the order they are folded,
//! divided by their count (e.g. a day's temperature). No sample, no value.
//!
//! Accumulator (state version 1, 16 bytes, little-endian): total `f64`, count `u64`.

#![cfg_attr(target_arch = "wasm32", no_std)]
extern crate alloc;
include!("../../guest_runtime.rs");

use alloc::{format, string::String, vec, vec::Vec};

wit_bindgen::generate!({ world: "aggregation", path: "../../wit" });

use exports::iot::aggregation::fold::{Guest, PluginInfo, Sample, Window};

const STATE_LEN: usize = 16;

fn read(state: &[u8]) -> Result<(f64, u64), String> {
    let state: &[u8; STATE_LEN] = state.try_into().map_err(|_| {
        format!(
            "mean: accumulator of {} bytes, expected {STATE_LEN}",
            state.len()
        )
    })?;
    let (total, count) = state.split_at(8);
    Ok((
        f64::from_le_bytes(total.try_into().unwrap()),
        u64::from_le_bytes(count.try_into().unwrap()),
    ))
}

fn write(state: &mut [u8], total: f64, count: u64) {
    state[..8].copy_from_slice(&total.to_le_bytes());
    state[8..].copy_from_slice(&count.to_le_bytes());
}

struct Mean;

impl Guest for Mean {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "mean".into(),
            state_version: 1,
            includes_window_start: false,
            min_inputs: 1,
            max_inputs: 1,
        }
    }

    fn init(_: Vec<(String, String)>, _: u32, _: Window) -> Result<Vec<u8>, String> {
        Ok(vec![0; STATE_LEN]) // 0.0, 0
    }

    fn fold(mut state: Vec<u8>, _: Window, samples: Vec<Sample>) -> Result<Vec<u8>, String> {
        let (mut total, count) = read(&state)?;
        for sample in &samples {
            total += sample.value;
        }
        write(&mut state, total, count + samples.len() as u64);
        Ok(state)
    }

    fn finish(state: Vec<u8>, _: Window) -> Result<Option<f64>, String> {
        let (total, count) = read(&state)?;
        Ok((count > 0).then(|| total / count as f64))
    }
}

export!(Mean);
