//! `count`: how many samples a window received (e.g. motion events a day).
//! Accumulator: count (u64), little-endian.

wit_bindgen::generate!({ world: "aggregation", path: "../../wit" });

use exports::iot::aggregation::fold::{Guest, PluginInfo, Sample, Window};

struct Count;

fn decode(state: &[u8]) -> Result<u64, String> {
    let bytes: [u8; 8] = state
        .try_into()
        .map_err(|_| format!("count: accumulator of {} bytes, expected 8", state.len()))?;
    Ok(u64::from_le_bytes(bytes))
}

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

    fn init(
        _params: Vec<(String, String)>,
        _inputs: u32,
        _window: Window,
    ) -> Result<Vec<u8>, String> {
        Ok(0u64.to_le_bytes().to_vec())
    }

    fn fold(state: Vec<u8>, _window: Window, samples: Vec<Sample>) -> Result<Vec<u8>, String> {
        let count = decode(&state)? + samples.len() as u64;
        Ok(count.to_le_bytes().to_vec())
    }

    fn finish(state: Vec<u8>, _window: Window) -> Result<Option<f64>, String> {
        let count = decode(&state)?;
        Ok((count > 0).then_some(count as f64))
    }
}

export!(Count);
