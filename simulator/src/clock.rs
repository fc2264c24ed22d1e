//! The simulated clock (SPEC §2, docs/ARCHITECTURE.md "Time and windows").
//!
//! Step `k` of a run is the instant `start + k·15 min`; `start` is a UTC midnight. Step 0
//! sends only the initial meter readings; step `k ≥ 1` closes the interval
//! `(t − 15 min, t]`. Every 20th step also sends a W1 reading stamped 2 days back, every
//! 120th one stamped 10 days back.

use std::time::{Duration, Instant};

use anyhow::bail;
use chrono::{NaiveDate, Utc};
use iot_protocol::time::{format_ts, DAY_MS, STEPS_PER_DAY, STEP_MS};

/// Every this many steps a W1 reading stamped [`LATE_SHORT_MS`] back is sent.
pub const LATE_SHORT_EVERY: u64 = 20;
/// How far back the frequent late reading is stamped: 2 days.
pub const LATE_SHORT_MS: i64 = 2 * DAY_MS;
/// Every this many steps a W1 reading stamped [`LATE_LONG_MS`] back is sent.
pub const LATE_LONG_EVERY: u64 = 120;
/// How far back the rare late reading is stamped: 10 days.
pub const LATE_LONG_MS: i64 = 10 * DAY_MS;

/// The instant of step `k`.
pub fn step_ts(start_ms: i64, k: u64) -> i64 {
    start_ms + k as i64 * STEP_MS
}

/// Whether `ts_ms` is a UTC midnight.
pub fn is_midnight(ts_ms: i64) -> bool {
    ts_ms.rem_euclid(DAY_MS) == 0
}

/// The last step of a run of `days` days: steps `0..=last_step(days)`.
pub fn last_step(days: u32) -> u64 {
    days as u64 * STEPS_PER_DAY as u64
}

/// Whether step `k` sends the 2-day-late W1 reading.
#[allow(clippy::manual_is_multiple_of)] // u64::is_multiple_of needs Rust 1.87; the workspace supports 1.85
pub fn sends_late_short(k: u64) -> bool {
    k > 0 && k % LATE_SHORT_EVERY == 0
}

/// Whether step `k` sends the 10-day-late W1 reading.
#[allow(clippy::manual_is_multiple_of)] // u64::is_multiple_of needs Rust 1.87; the workspace supports 1.85
pub fn sends_late_long(k: u64) -> bool {
    k > 0 && k % LATE_LONG_EVERY == 0
}

/// Parses `--start`: RFC 3339 (`2020-01-01T00:00:00Z`, an offset is honoured, none means
/// UTC) or a date `2020-01-01`. It must be a UTC midnight, so that days line up with steps.
pub fn parse_start(text: &str) -> anyhow::Result<i64> {
    let text = text.trim();
    let ts_ms = match NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        Ok(date) => date.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc().timestamp_millis(),
        Err(_) => iot_protocol::record::parse_timestamp(text).map_err(|_| {
            anyhow::anyhow!(
                "--start {text:?} is neither a date (2020-01-01) nor an RFC 3339 time (2020-01-01T00:00:00Z)"
            )
        })?,
    };
    if !is_midnight(ts_ms) {
        bail!(
            "--start {text:?} is {}, not a UTC midnight: the simulator's days run from 00:00 UTC; \
             give a date such as 2020-01-01",
            format_ts(ts_ms)
        );
    }
    Ok(ts_ms)
}

/// The start of today (UTC), the default start in real-time mode.
pub fn today_utc_midnight() -> i64 {
    iot_protocol::time::day_floor(Utc::now().timestamp_millis())
}

/// The default start in fast mode: 2020-01-01.
pub fn default_fast_start() -> i64 {
    parse_start("2020-01-01").expect("a valid date")
}

/// When each step is due in real-time mode: `steps_per_second` steps per second of wall
/// time, step 0 at once. Steps that fall behind (a slow broker) are sent as soon as
/// possible, so the simulated clock catches up with the wall clock.
#[derive(Debug, Clone, Copy)]
pub struct Pacer {
    origin: Instant,
    steps_per_second: f64,
}

impl Pacer {
    pub fn new(steps_per_second: f64) -> anyhow::Result<Pacer> {
        if !(steps_per_second.is_finite() && steps_per_second > 0.0) {
            bail!("--speed must be a positive number of steps per second (got {steps_per_second})");
        }
        Ok(Pacer {
            origin: Instant::now(),
            steps_per_second,
        })
    }

    pub fn due(&self, k: u64) -> Instant {
        self.origin + Duration::from_secs_f64(k as f64 / self.steps_per_second)
    }

    /// Sleeps until step `k` is due, in short naps so that `stop` is noticed quickly.
    /// Returns false if `stop` became true.
    pub fn wait_for(&self, k: u64, stop: &dyn Fn() -> bool) -> bool {
        let due = self.due(k);
        loop {
            if stop() {
                return false;
            }
            let now = Instant::now();
            if now >= due {
                return true;
            }
            std::thread::sleep((due - now).min(Duration::from_millis(50)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JAN_1_2020: i64 = 1_577_836_800_000;

    #[test]
    fn start_accepts_a_date_or_a_midnight_in_rfc3339() {
        assert_eq!(parse_start("2020-01-01").unwrap(), JAN_1_2020);
        assert_eq!(parse_start("2020-01-01T00:00:00Z").unwrap(), JAN_1_2020);
        assert_eq!(
            parse_start("2020-01-01T01:00:00+01:00").unwrap(),
            JAN_1_2020
        );
        assert_eq!(parse_start("2020-01-01T00:00:00").unwrap(), JAN_1_2020);
    }

    #[test]
    fn start_refuses_anything_but_a_utc_midnight() {
        let err = parse_start("2020-01-01T00:15:00Z").unwrap_err().to_string();
        assert!(err.contains("not a UTC midnight"), "{err}");
        assert!(parse_start("2020-01-01T00:00:00+01:00").is_err());
        assert!(parse_start("yesterday")
            .unwrap_err()
            .to_string()
            .contains("neither a date"));
    }

    #[test]
    fn late_readings_come_every_20_and_every_120_steps_but_not_at_step_0() {
        assert!(!sends_late_short(0) && !sends_late_long(0));
        assert!(sends_late_short(20) && !sends_late_long(20));
        assert!(sends_late_short(120) && sends_late_long(120));
        assert!(!sends_late_short(21));
    }

    #[test]
    fn a_day_has_96_steps_and_every_96th_is_a_midnight() {
        assert_eq!(last_step(3), 288);
        assert!(is_midnight(step_ts(JAN_1_2020, 96)));
        assert!(!is_midnight(step_ts(JAN_1_2020, 95)));
    }
}
