//! `motion-at-night`, an alarm rule: raises an alarm for every motion event (a non-zero
//! reading) whose local time of day is in [`from`, `to`) (default 02:00–06:00; a range may
//! wrap past midnight), local time being UTC plus `utc_offset` (default `+00:00`). The
//! alarm's value is 1.

use iot_plugin::{
    AlarmRule, Alarms, Error, Params, Result, Sample, State, TimeOfDay, UtcOffset, Window,
};

#[derive(Params)]
pub struct Night {
    #[param(default = "02:00")]
    from: TimeOfDay,
    #[param(default = "06:00")]
    to: TimeOfDay,
    #[param(default = "+00:00")]
    utc_offset: UtcOffset,
}

/// State version 1: 12 bytes, the parameters (fold does not receive them).
#[derive(Default, State)]
pub struct Range {
    from_ms: u32,
    to_ms: u32,
    offset_ms: i32,
}

impl Range {
    fn contains(&self, time: TimeOfDay) -> bool {
        let at = |ms| TimeOfDay::from_ms(ms).unwrap_or_default();
        time.is_within(at(self.from_ms), at(self.to_ms))
    }
}

pub struct MotionAtNight;

impl AlarmRule for MotionAtNight {
    const NAME: &'static str = "motion-at-night";
    const STATE_VERSION: u32 = 1;
    type Params = Night;
    type State = Range;

    fn init(night: Night, _: u32, _: Window) -> Result<Range> {
        if night.from == night.to {
            return Err(Error::new(
                "parameters from and to are the same time: the night would be empty",
            ));
        }
        Ok(Range {
            from_ms: night.from.ms(),
            to_ms: night.to.ms(),
            offset_ms: night.utc_offset.ms(),
        })
    }

    fn fold(range: &mut Range, _: Window, samples: &[Sample], alarms: &mut Alarms) -> Result<()> {
        let offset = UtcOffset::from_ms(range.offset_ms)
            .ok_or_else(|| Error::new("bad offset in the accumulator"))?;
        for motion in samples.iter().filter(|s| s.value != 0.0) {
            let local = offset.time_of_day(motion.ts_ms);
            if range.contains(local) {
                alarms.raise(
                    motion.ts_ms,
                    1.0,
                    format!("motion at {local} local time ({offset})"),
                );
            }
        }
        Ok(())
    }
}

iot_plugin::export_rule!(MotionAtNight);
