//! `sum`: the sum of a window's values, added in the order they arrive (e.g. a day's energy).
//! Accumulator: total (f64) and count (u64), little-endian.

wit_bindgen::generate!({ world: "aggregation", path: "../../wit" });

use exports::iot::aggregation::fold::{Guest, PluginInfo, Sample, Window};

struct Sum;

fn decode(state: &[u8]) -> Result<(f64, u64), String> {
    let bytes: &[u8; 16] = state
        .try_into()
        .map_err(|_| format!("sum: accumulator of {} bytes, expected 16", state.len()))?;
    let total = f64::from_le_bytes(bytes[..8].try_into().unwrap());
    let count = u64::from_le_bytes(bytes[8..].try_into().unwrap());
    Ok((total, count))
}

fn encode(total: f64, count: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    out.extend_from_slice(&total.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out
}

impl Guest for Sum {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "sum".into(),
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
        Ok(encode(0.0, 0))
    }

    fn fold(state: Vec<u8>, _window: Window, samples: Vec<Sample>) -> Result<Vec<u8>, String> {
        let (mut total, mut count) = decode(&state)?;
        for s in &samples {
            total += s.value;
        }
        count += samples.len() as u64;
        Ok(encode(total, count))
    }

    fn finish(state: Vec<u8>, _window: Window) -> Result<Option<f64>, String> {
        let (total, count) = decode(&state)?;
        Ok((count > 0).then_some(total))
    }
}

export!(Sum);
