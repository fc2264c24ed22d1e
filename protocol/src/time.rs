//! Time conventions (SPEC §2): UTC milliseconds since the epoch, 15-minute steps, and
//! day windows that end at the following midnight.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::sensor::{Sensor, SensorKind};

pub const MINUTE_MS: i64 = 60_000;
pub const STEP_MS: i64 = 15 * MINUTE_MS;
pub const DAY_MS: i64 = 24 * 60 * MINUTE_MS;
pub const STEPS_PER_DAY: i64 = DAY_MS / STEP_MS;

/// Start of the UTC day that contains `ts` (floor to midnight).
pub fn day_floor(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(DAY_MS) * DAY_MS
}

/// The end of the day window a reading belongs to under the interval-end convention:
/// day D covers (D 00:00, D+1 00:00], so a reading stamped exactly at midnight closes the
/// day before.
pub fn interval_end_window_end(ts_ms: i64) -> i64 {
    day_floor(ts_ms - 1) + DAY_MS
}

/// How a producer stamps a reading that covers an interval (SPEC §2).
///
/// The host works in the interval-end convention throughout. A reading stamped at the
/// start of its interval is filed by its *interval-end instant*: the stamp plus the
/// 15-minute step for every sensor read on the step clock (the daily meters too: a meter
/// stamped D 23:45 reads the meter at D+1 00:00), plus 1 ms for a motion event, which has
/// no interval (so an event at exactly D 00:00 belongs to day D). Day D is then
/// [D 00:00, D+1 00:00) and its outputs are stored at D 00:00.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StampConvention {
    /// Stamped at the end of the interval: day D is (D 00:00, D+1 00:00], its outputs are
    /// stored at D+1 00:00 (the default).
    #[default]
    IntervalEnd,
    /// Stamped at the start of the interval: day D is [D 00:00, D+1 00:00), its outputs are
    /// stored at D 00:00.
    IntervalStart,
}

impl StampConvention {
    pub fn as_str(self) -> &'static str {
        match self {
            StampConvention::IntervalEnd => "interval-end",
            StampConvention::IntervalStart => "interval-start",
        }
    }

    /// The instant a reading is filed by: its stamp, moved to its interval's end.
    pub fn interval_end_instant(self, ts_ms: i64, sensor: Sensor) -> i64 {
        match (self, sensor.kind()) {
            (StampConvention::IntervalEnd, _) => ts_ms,
            (StampConvention::IntervalStart, SensorKind::Event) => ts_ms + 1,
            (StampConvention::IntervalStart, _) => ts_ms + STEP_MS,
        }
    }

    /// Where the output of the day window ending at `window_end` is stored.
    pub fn output_ts(self, window_end: i64) -> i64 {
        match self {
            StampConvention::IntervalEnd => window_end,
            StampConvention::IntervalStart => window_end - DAY_MS,
        }
    }
}

impl std::str::FromStr for StampConvention {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "interval-end" | "end" => Ok(StampConvention::IntervalEnd),
            "interval-start" | "start" => Ok(StampConvention::IntervalStart),
            other => Err(format!(
                "unknown stamp convention {other:?}: expected interval-end (readings stamped at \
                 the end of their interval, the default) or interval-start"
            )),
        }
    }
}

impl std::fmt::Display for StampConvention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// RFC 3339 with a `Z`, second precision unless milliseconds are present.
pub fn format_ts(ts_ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ts_ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
        .unwrap_or_else(|| ts_ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const JAN_1: i64 = 1_577_836_800_000; // 2020-01-01T00:00:00Z

    #[test]
    fn a_reading_at_midnight_closes_the_day_before() {
        assert_eq!(interval_end_window_end(JAN_1 + DAY_MS), JAN_1 + DAY_MS);
        assert_eq!(interval_end_window_end(JAN_1 + STEP_MS), JAN_1 + DAY_MS);
        assert_eq!(
            interval_end_window_end(JAN_1 + DAY_MS + 1),
            JAN_1 + 2 * DAY_MS
        );
    }

    #[test]
    fn interval_start_stamps_file_a_day_from_its_midnight_to_its_last_step() {
        let start = StampConvention::IntervalStart;
        let first = start.interval_end_instant(JAN_1, Sensor::TH1);
        let last = start.interval_end_instant(JAN_1 + DAY_MS - STEP_MS, Sensor::TH1);
        assert_eq!(interval_end_window_end(first), JAN_1 + DAY_MS);
        assert_eq!(interval_end_window_end(last), JAN_1 + DAY_MS);
        assert_eq!(start.output_ts(JAN_1 + DAY_MS), JAN_1);
    }

    #[test]
    fn interval_start_meter_at_the_last_step_reads_the_next_midnight() {
        let start = StampConvention::IntervalStart;
        let meter = start.interval_end_instant(JAN_1 + DAY_MS - STEP_MS, Sensor::Etot);
        assert_eq!(meter, JAN_1 + DAY_MS);
    }

    #[test]
    fn interval_start_motion_at_midnight_belongs_to_the_day_it_starts() {
        let start = StampConvention::IntervalStart;
        let at_midnight = start.interval_end_instant(JAN_1 + DAY_MS, Sensor::Mov1);
        let before = start.interval_end_instant(JAN_1 + DAY_MS - 1, Sensor::Mov1);
        assert_eq!(interval_end_window_end(at_midnight), JAN_1 + 2 * DAY_MS);
        assert_eq!(interval_end_window_end(before), JAN_1 + DAY_MS);
    }

    #[test]
    fn interval_end_is_the_identity() {
        let end = StampConvention::IntervalEnd;
        assert_eq!(end.interval_end_instant(JAN_1, Sensor::Mov1), JAN_1);
        assert_eq!(end.output_ts(JAN_1), JAN_1);
    }

    #[test]
    fn timestamps_format_as_utc_rfc3339() {
        assert_eq!(format_ts(JAN_1 + STEP_MS), "2020-01-01T00:15:00Z");
    }
}
