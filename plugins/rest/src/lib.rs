//! `rest`: input 0 minus every other input, computed as ((x0 − x1) − x2) − … in input
//! order (SPEC: AggDayRest, a day's leak metric). Takes 2 to 64 inputs; the host folds one
//! sample per input that has a value (`input` = its position). No value unless every
//! declared input has one; if an input gets several samples, the last one folded wins.
//!
//! Accumulator (state version 1, 9 bytes per declared input, little-endian): for each input
//! in order, a presence byte (0 or 1) and its value `f64`.

#![cfg_attr(target_arch = "wasm32", no_std)]
extern crate alloc;
include!("../../guest_runtime.rs");

use alloc::{format, string::String, vec, vec::Vec};

wit_bindgen::generate!({ world: "aggregation", path: "../../wit" });

use exports::iot::aggregation::fold::{Guest, PluginInfo, Sample, Window};

const SLOT: usize = 9;
const MIN_INPUTS: u32 = 2;
const MAX_INPUTS: u32 = 64;

fn check(state: &[u8]) -> Result<(), String> {
    let inputs = state.len() / SLOT;
    if inputs * SLOT != state.len()
        || !(MIN_INPUTS as usize..=MAX_INPUTS as usize).contains(&inputs)
    {
        return Err(format!(
            "rest: accumulator of {} bytes, expected {SLOT} per input",
            state.len()
        ));
    }
    Ok(())
}

struct Rest;

impl Guest for Rest {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "rest".into(),
            state_version: 1,
            includes_window_start: false,
            min_inputs: MIN_INPUTS,
            max_inputs: MAX_INPUTS,
        }
    }

    fn init(_: Vec<(String, String)>, inputs: u32, _: Window) -> Result<Vec<u8>, String> {
        if !(MIN_INPUTS..=MAX_INPUTS).contains(&inputs) {
            return Err(format!(
                "rest: takes {MIN_INPUTS} to {MAX_INPUTS} inputs, the output declares {inputs}"
            ));
        }
        Ok(vec![0; inputs as usize * SLOT])
    }

    fn fold(mut state: Vec<u8>, _: Window, samples: Vec<Sample>) -> Result<Vec<u8>, String> {
        check(&state)?;
        let declared = state.len() / SLOT;
        for sample in &samples {
            let at = sample.input as usize * SLOT;
            let Some(slot) = state.get_mut(at..at + SLOT) else {
                return Err(format!(
                    "rest: sample for input {}, but the output declares {declared} inputs",
                    sample.input
                ));
            };
            slot[0] = 1;
            slot[1..].copy_from_slice(&sample.value.to_le_bytes());
        }
        Ok(state)
    }

    fn finish(state: Vec<u8>, _: Window) -> Result<Option<f64>, String> {
        check(&state)?;
        let mut values = state
            .chunks_exact(SLOT)
            .map(|slot| (slot[0] == 1).then(|| f64::from_le_bytes(slot[1..].try_into().unwrap())));
        let Some(mut rest) = values.next().flatten() else {
            return Ok(None);
        };
        for value in values {
            let Some(value) = value else {
                return Ok(None);
            };
            rest -= value;
        }
        Ok(Some(rest))
    }
}

export!(Rest);
