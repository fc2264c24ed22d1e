//! `rest`: input 0 minus every other input, as ((x0 − x1) − x2) − …, for a day's leak
//! metrics (SPEC: AggDayRest). Has a value only once every declared input has one.
//!
//! Accumulator: per input, a presence byte and its value (f64), little-endian.

wit_bindgen::generate!({ world: "aggregation", path: "../../wit" });

use exports::iot::aggregation::fold::{Guest, PluginInfo, Sample, Window};

struct Rest;

const SLOT: usize = 9;

impl Guest for Rest {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "rest".into(),
            state_version: 1,
            includes_window_start: false,
            min_inputs: 2,
            max_inputs: 64,
        }
    }

    fn init(
        _params: Vec<(String, String)>,
        inputs: u32,
        _window: Window,
    ) -> Result<Vec<u8>, String> {
        Ok(vec![0; inputs as usize * SLOT])
    }

    fn fold(mut state: Vec<u8>, _window: Window, samples: Vec<Sample>) -> Result<Vec<u8>, String> {
        let declared = state.len() / SLOT;
        for s in &samples {
            let at = s.input as usize * SLOT;
            let slot = state.get_mut(at..at + SLOT).ok_or_else(|| {
                format!(
                    "rest: sample for input {} but the output declares {}",
                    s.input, declared
                )
            })?;
            slot[0] = 1;
            slot[1..].copy_from_slice(&s.value.to_le_bytes());
        }
        Ok(state)
    }

    fn finish(state: Vec<u8>, _window: Window) -> Result<Option<f64>, String> {
        let mut slots = state.chunks_exact(SLOT);
        let Some(first) = slots.next() else {
            return Ok(None);
        };
        let value =
            |slot: &[u8]| (slot[0] == 1).then(|| f64::from_le_bytes(slot[1..].try_into().unwrap()));
        let Some(mut rest) = value(first) else {
            return Ok(None);
        };
        for slot in slots {
            let Some(v) = value(slot) else {
                return Ok(None);
            };
            rest -= v;
        }
        Ok(Some(rest))
    }
}

export!(Rest);
