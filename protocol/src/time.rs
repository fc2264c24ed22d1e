//! Time conventions (SPEC §2): UTC milliseconds since the epoch, 15-minute steps, and
//! day windows that end at the following midnight.

use chrono::{DateTime, SecondsFormat, Utc};

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
    fn timestamps_format_as_utc_rfc3339() {
        assert_eq!(format_ts(JAN_1 + STEP_MS), "2020-01-01T00:15:00Z");
    }
}
