//! `daily-diff`: a cumulative meter's reading at the window's end minus its reading at the
//! window's start (SPEC: AggDayDiff). Asks the host for the sample stamped exactly at the
//! window's start; a window without both readings has no value. When one instant has
//! several readings, the last one folded wins.
//!
//! Accumulator: flags (u8: bit 0 = start seen, bit 1 = end seen), start (f64), end (f64).

wit_bindgen::generate!({ world: "aggregation", path: "../../wit" });

use exports::iot::aggregation::fold::{Guest, PluginInfo, Sample, Window};

struct DailyDiff;

const START: u8 = 1;
const END: u8 = 2;

fn decode(state: &[u8]) -> Result<(u8, f64, f64), String> {
    if state.len() != 17 {
        return Err(format!(
            "daily-diff: accumulator of {} bytes, expected 17",
            state.len()
        ));
    }
    let start = f64::from_le_bytes(state[1..9].try_into().unwrap());
    let end = f64::from_le_bytes(state[9..17].try_into().unwrap());
    Ok((state[0], start, end))
}

fn encode(flags: u8, start: f64, end: f64) -> Vec<u8> {
    let mut out = Vec::with_capacity(17);
    out.push(flags);
    out.extend_from_slice(&start.to_le_bytes());
    out.extend_from_slice(&end.to_le_bytes());
    out
}

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

    fn init(
        _params: Vec<(String, String)>,
        _inputs: u32,
        _window: Window,
    ) -> Result<Vec<u8>, String> {
        Ok(encode(0, 0.0, 0.0))
    }

    fn fold(state: Vec<u8>, window: Window, samples: Vec<Sample>) -> Result<Vec<u8>, String> {
        let (mut flags, mut start, mut end) = decode(&state)?;
        for s in &samples {
            if s.ts_ms == window.start_ms {
                flags |= START;
                start = s.value;
            } else if s.ts_ms == window.end_ms {
                flags |= END;
                end = s.value;
            }
        }
        Ok(encode(flags, start, end))
    }

    fn finish(state: Vec<u8>, _window: Window) -> Result<Option<f64>, String> {
        let (flags, start, end) = decode(&state)?;
        Ok((flags == START | END).then(|| end - start))
    }
}

export!(DailyDiff);
