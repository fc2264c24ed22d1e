//! `{{name}}`: the mean of a window's values times the parameter `scale` (default 1). No
//! sample, no value.
//!
//! A starting point made by `iot-host plugin new`: change `fold` and `finish` to your
//! aggregation, and bump `STATE_VERSION` whenever the fields of the accumulator change.
//! How to build, check and deploy it: plugins/README.md of iot-stream.

use iot_plugin::{Aggregation, Error, Params, Result, Sample, State, Window};

/// The output's parameters (`[output.params]` in the pipeline file).
#[derive(Params)]
pub struct Settings {
    #[param(default = "1")]
    scale: f64,
}

/// The accumulator of one window (state version 1: 24 bytes).
#[derive(Default, State)]
pub struct Totals {
    scale: f64,
    total: f64,
    count: u64,
}

pub struct {{type}};

impl Aggregation for {{type}} {
    const NAME: &'static str = "{{name}}";
    const STATE_VERSION: u32 = 1;
    type Params = Settings;
    type State = Totals;

    fn init(settings: Settings, _: u32, _: Window) -> Result<Totals> {
        if settings.scale == 0.0 {
            return Err(Error::new("parameter scale must not be 0"));
        }
        Ok(Totals { scale: settings.scale, ..Totals::default() })
    }

    fn fold(state: &mut Totals, _: Window, samples: &[Sample]) -> Result<()> {
        samples.iter().for_each(|sample| state.total += sample.value);
        state.count += samples.len() as u64;
        Ok(())
    }

    fn finish(state: &Totals, _: Window) -> Result<Option<f64>> {
        Ok((state.count > 0).then(|| state.total / state.count as f64 * state.scale))
    }
}

iot_plugin::export!({{type}});

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Window = Window { start_ms: 0, end_ms: iot_plugin::DAY_MS };
    const STEP_MS: i64 = 900_000;

    fn reading(step: i64, value: f64) -> Sample {
        Sample { input: 0, ts_ms: step * STEP_MS, value }
    }

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings> {
        let pairs: Vec<(String, String)> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::parse(&pairs)
    }

    #[test]
    fn a_day_is_the_mean_times_the_scale() {
        let mut state = {{type}}::init(settings(&[("scale", "2")]).unwrap(), 1, DAY).unwrap();
        {{type}}::fold(&mut state, DAY, &[reading(1, 1.0), reading(2, 2.0)]).unwrap();
        assert_eq!({{type}}::finish(&state, DAY).unwrap(), Some(3.0));
    }

    #[test]
    fn no_sample_is_no_value() {
        let state = {{type}}::init(settings(&[]).unwrap(), 1, DAY).unwrap();
        assert_eq!({{type}}::finish(&state, DAY).unwrap(), None);
    }

    #[test]
    fn a_zero_or_unknown_parameter_is_refused() {
        assert!({{type}}::init(settings(&[("scale", "0")]).unwrap(), 1, DAY).is_err());
        assert!(settings(&[("scael", "2")]).is_err());
    }
}
