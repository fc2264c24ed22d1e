//! `night-count`: how many samples with a non-zero value (e.g. motion events of Mov1) a
//! window received at a time of day (UTC, `ts_ms` modulo 86 400 000) inside the half-open
//! range `[from, to)`. Parameters `from` and `to` are `"HH:MM"` (00:00 to 23:59), default
//! `"02:00"` and `"06:00"`; when `from` is later than `to` the range wraps past midnight
//! (`from = "22:00"`, `to = "06:00"`). A bad or unknown parameter, or `from == to`, makes
//! `init` fail. A window with samples but none counted is 0; with no sample, no value.

use iot_plugin::{Aggregation, Error, Params, Result, Sample, State, TimeOfDay, Window};

#[derive(Params)]
pub struct Night {
    #[param(default = "02:00")]
    from: TimeOfDay,
    #[param(default = "06:00")]
    to: TimeOfDay,
}

/// State version 1: 24 bytes (the range travels with the window's accumulator).
#[derive(Default, State)]
pub struct Counts {
    from_ms: u32,
    to_ms: u32,
    seen: u64,
    counted: u64,
}

impl Counts {
    fn in_range(&self, ts_ms: i64) -> bool {
        let at = |ms| TimeOfDay::from_ms(ms).unwrap_or_default();
        TimeOfDay::of_instant(ts_ms).is_within(at(self.from_ms), at(self.to_ms))
    }
}

pub struct NightCount;

impl Aggregation for NightCount {
    const NAME: &'static str = "night-count";
    const STATE_VERSION: u32 = 1;
    type Params = Night;
    type State = Counts;

    fn init(night: Night, _: u32, _: Window) -> Result<Counts> {
        if night.from == night.to {
            return Err(Error::new(
                "parameters from and to are the same time, so the range [from, to) would be empty",
            ));
        }
        let (from_ms, to_ms) = (night.from.ms(), night.to.ms());
        Ok(Counts {
            from_ms,
            to_ms,
            ..Counts::default()
        })
    }

    fn fold(state: &mut Counts, _: Window, samples: &[Sample]) -> Result<()> {
        state.seen += samples.len() as u64;
        let counted = samples
            .iter()
            .filter(|s| s.value != 0.0 && state.in_range(s.ts_ms));
        state.counted += counted.count() as u64;
        Ok(())
    }

    fn finish(state: &Counts, _: Window) -> Result<Option<f64>> {
        Ok((state.seen > 0).then_some(state.counted as f64))
    }
}

iot_plugin::export!(NightCount);

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Window = Window {
        start_ms: 0,
        end_ms: iot_plugin::DAY_MS,
    };
    const HOUR_MS: i64 = 3_600_000;

    fn motion_at(hours: i64) -> Sample {
        Sample {
            input: 0,
            ts_ms: hours * HOUR_MS,
            value: 1.0,
        }
    }

    fn night(from: &str, to: &str) -> Night {
        Night::parse(&[("from".into(), from.into()), ("to".into(), to.into())]).unwrap()
    }

    #[test]
    fn a_range_past_midnight_counts_both_ends_of_the_day() {
        let mut state = NightCount::init(night("22:00", "06:00"), 1, DAY).unwrap();
        let samples: Vec<Sample> = [1, 5, 6, 12, 21, 22, 23].map(motion_at).into();
        NightCount::fold(&mut state, DAY, &samples).unwrap();
        assert_eq!(NightCount::finish(&state, DAY).unwrap(), Some(4.0)); // 1, 5, 22, 23
    }

    #[test]
    fn an_empty_range_is_refused() {
        let err = NightCount::init(night("04:00", "04:00"), 1, DAY)
            .err()
            .unwrap();
        assert!(err.message().contains("same time"), "{err}");
    }
}
