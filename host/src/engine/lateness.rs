//! The late-data policy (SPEC §3): a site's watermark is its newest reading time less the
//! out-of-orderness bound; a day is emitted once the watermark passes its end; a reading for
//! an emitted day is folded in while the watermark is within the allowed lateness of the
//! day's end, and rejected after.

use iot_protocol::time::DAY_MS;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatenessPolicy {
    pub out_of_orderness_ms: i64,
    pub allowed_lateness_ms: i64,
}

impl Default for LatenessPolicy {
    fn default() -> Self {
        LatenessPolicy {
            out_of_orderness_ms: 0,
            allowed_lateness_ms: 2 * DAY_MS,
        }
    }
}

/// Where a reading stands against its site's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lateness {
    /// Its day has not been emitted yet.
    OnTime,
    /// Its day was emitted; it is folded in and the day re-emitted.
    Accepted,
    /// Beyond the allowed lateness: stored as LateRej, in no aggregate.
    Rejected,
}

impl LatenessPolicy {
    /// The watermark of a site whose newest reading is at `newest_ts`.
    pub fn watermark(&self, newest_ts: i64) -> i64 {
        newest_ts.saturating_sub(self.out_of_orderness_ms)
    }

    /// Classifies a reading whose day ends at `window_end`, against the site's newest time
    /// *before* this reading.
    pub fn classify(&self, window_end: i64, newest_ts: i64) -> Lateness {
        let watermark = self.watermark(newest_ts);
        if window_end >= watermark {
            Lateness::OnTime
        } else if self.retains(window_end, watermark) {
            Lateness::Accepted
        } else {
            Lateness::Rejected
        }
    }

    /// Whether a day ending at `window_end` can still change under `watermark`.
    pub fn retains(&self, window_end: i64, watermark: i64) -> bool {
        window_end.saturating_add(self.allowed_lateness_ms) >= watermark
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iot_protocol::time::STEP_MS;

    const DAY_END: i64 = 1_577_923_200_000; // 2020-01-02T00:00:00Z, end of 2020-01-01

    #[test]
    fn a_reading_is_on_time_until_the_watermark_passes_its_day() {
        let p = LatenessPolicy::default();
        assert_eq!(p.classify(DAY_END, DAY_END), Lateness::OnTime);
        assert_eq!(p.classify(DAY_END, DAY_END + STEP_MS), Lateness::Accepted);
    }

    #[test]
    fn the_allowed_lateness_is_inclusive_and_one_step_more_is_rejected() {
        let p = LatenessPolicy::default();
        assert_eq!(
            p.classify(DAY_END, DAY_END + 2 * DAY_MS),
            Lateness::Accepted
        );
        assert_eq!(
            p.classify(DAY_END, DAY_END + 2 * DAY_MS + STEP_MS),
            Lateness::Rejected
        );
    }

    #[test]
    fn the_out_of_orderness_bound_holds_the_watermark_back() {
        let p = LatenessPolicy {
            out_of_orderness_ms: STEP_MS,
            ..LatenessPolicy::default()
        };
        assert_eq!(p.classify(DAY_END, DAY_END + STEP_MS), Lateness::OnTime);
    }
}
