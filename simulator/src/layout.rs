//! Where each reading goes: the layout of the producer the simulator plays.
//!
//! - [`Layout::BySite`] (SPEC §4): one topic, records keyed by site, so all sensors of a
//!   site share a partition; readings stamped at the end of their interval.
//! - [`Layout::Course`]: the original course project's producer, for trying the host's
//!   repartition stage against it: plain lines (no site, no key), a partition per sensor
//!   type (TH1/TH2 → 0, HVAC1/HVAC2/MiAC1/MiAC2 → 1, Etot → 2, W1 → 3, Wtot → 4, Mov1 → 5),
//!   the 10-days-late W1 readings on a topic of their own (`<topic>-late`, one partition),
//!   and readings stamped at the *start* of their interval (the first one at 00:00:00, the
//!   daily meters at 23:45). Motion events keep their instant.

use iot_protocol::time::STEP_MS;
use iot_protocol::Sensor;

use crate::generator::{ReadingKind, SimReading};

/// Partitions of the course layout's main topic.
pub const COURSE_PARTITIONS: i32 = 6;
/// The course layout's topic of 10-days-late readings is the main topic and this suffix.
pub const COURSE_LATE_TOPIC_SUFFIX: &str = "-late";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Layout {
    /// One topic keyed by site (SPEC §4).
    #[default]
    BySite,
    /// The course project's producer: see the module documentation.
    Course,
}

/// Where one reading is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// On the late-readings topic instead of the main one.
    pub late_topic: bool,
    /// An explicit partition (`None`: the key decides).
    pub partition: Option<i32>,
    /// The reading's stamp in this layout.
    pub ts_ms: i64,
    /// Whether the record carries the site as its key.
    pub keyed: bool,
}

impl Layout {
    pub fn route(self, r: &SimReading) -> Route {
        match self {
            Layout::BySite => Route {
                late_topic: false,
                partition: None,
                ts_ms: r.ts_ms,
                keyed: true,
            },
            Layout::Course => Route {
                late_topic: r.kind == ReadingKind::LateLong,
                partition: Some(if r.kind == ReadingKind::LateLong {
                    0
                } else {
                    course_partition(r.sensor)
                }),
                ts_ms: match r.kind {
                    ReadingKind::Motion => r.ts_ms,
                    _ => r.ts_ms - STEP_MS,
                },
                keyed: false,
            },
        }
    }
}

/// The course producer's partition of a sensor type.
pub fn course_partition(sensor: Sensor) -> i32 {
    match sensor {
        Sensor::TH1 | Sensor::TH2 => 0,
        Sensor::HVAC1 | Sensor::HVAC2 | Sensor::MiAC1 | Sensor::MiAC2 => 1,
        Sensor::Etot => 2,
        Sensor::W1 => 3,
        Sensor::Wtot => 4,
        Sensor::Mov1 => 5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JAN_1: i64 = 1_577_836_800_000;

    fn reading(kind: ReadingKind, sensor: Sensor, ts_ms: i64) -> SimReading {
        SimReading {
            site: 0,
            kind,
            sensor,
            ts_ms,
            value: 1.0,
        }
    }

    #[test]
    fn the_course_layout_stamps_a_reading_at_the_start_of_its_interval() {
        let first = Layout::Course.route(&reading(
            ReadingKind::Interval,
            Sensor::TH1,
            JAN_1 + STEP_MS,
        ));
        assert_eq!(first.ts_ms, JAN_1);
        assert_eq!(first.partition, Some(0));
        let meter = Layout::Course.route(&reading(ReadingKind::Meter, Sensor::Etot, JAN_1));
        assert_eq!(
            meter.ts_ms,
            JAN_1 - STEP_MS,
            "a midnight meter lands at 23:45"
        );
        let motion = Layout::Course.route(&reading(ReadingKind::Motion, Sensor::Mov1, JAN_1 + 7));
        assert_eq!((motion.ts_ms, motion.partition), (JAN_1 + 7, Some(5)));
    }

    #[test]
    fn the_course_layout_sends_ten_days_late_readings_to_their_own_topic() {
        let long = Layout::Course.route(&reading(ReadingKind::LateLong, Sensor::W1, JAN_1));
        assert!(long.late_topic);
        let short = Layout::Course.route(&reading(ReadingKind::LateShort, Sensor::W1, JAN_1));
        assert_eq!((short.late_topic, short.partition), (false, Some(3)));
    }

    #[test]
    fn the_default_layout_keys_by_site_and_keeps_stamps() {
        let r = Layout::BySite.route(&reading(ReadingKind::Interval, Sensor::W1, JAN_1));
        assert_eq!(
            r,
            Route {
                late_topic: false,
                partition: None,
                ts_ms: JAN_1,
                keyed: true
            }
        );
    }
}
