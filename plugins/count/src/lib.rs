//! `count`: how many samples a window received, whatever their values (e.g. a day's motion
//! events). A window with no sample counts 0.
//!
//! Accumulator (state version 1, 8 bytes, little-endian): count `u64`.

#![cfg_attr(target_arch = "wasm32", no_std)]
extern crate alloc;
include!("../../guest_runtime.rs");

use alloc::{format, string::String, vec, vec::Vec};

wit_bindgen::generate!({ world: "aggregation", path: "../../wit" });

use exports::iot::aggregation::fold::{Guest, PluginInfo, Sample, Window};

const STATE_LEN: usize = 8;

fn read(state: &[u8]) -> Result<u64, String> {
    let state: [u8; STATE_LEN] = state.try_into().map_err(|_| {
        format!(
            "count: accumulator of {} bytes, expected {STATE_LEN}",
            state.len()
        )
    })?;
    Ok(u64::from_le_bytes(state))
}

struct Count;

impl Guest for Count {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "count".into(),
            state_version: 1,
            includes_window_start: false,
            min_inputs: 1,
            max_inputs: 1,
        }
    }

    fn init(_: Vec<(String, String)>, _: u32, _: Window) -> Result<Vec<u8>, String> {
        Ok(vec![0; STATE_LEN])
    }

    fn fold(mut state: Vec<u8>, _: Window, samples: Vec<Sample>) -> Result<Vec<u8>, String> {
        let count = read(&state)? + samples.len() as u64;
        state.copy_from_slice(&count.to_le_bytes());
        Ok(state)
    }

    fn finish(state: Vec<u8>, _: Window) -> Result<Option<f64>, String> {
        Ok(Some(read(&state)? as f64))
    }
}

export!(Count);
