//! The reference site's ten sensors as the simulator plays them (SPEC §1): value ranges,
//! meter growth, how many motion events a day, and how sites are named.
//!
//! Every value is drawn in hundredths (cents) so published records carry at most two
//! decimals: readable, and `value` round-trips through JSON exactly.

use std::ops::RangeInclusive;

use iot_protocol::Sensor;

/// The sensors that report once per 15-minute interval, in the order a step emits them.
pub const INTERVAL_SENSORS: [Sensor; 7] = [
    Sensor::TH1,
    Sensor::TH2,
    Sensor::HVAC1,
    Sensor::HVAC2,
    Sensor::MiAC1,
    Sensor::MiAC2,
    Sensor::W1,
];

/// The cumulative meters, read at every midnight, in the order a step emits them.
pub const METERS: [Sensor; 2] = [Sensor::Etot, Sensor::Wtot];

/// The sensor whose readings are also sent late (SPEC §2).
pub const LATE_SENSOR: Sensor = Sensor::W1;

/// The sensor of the motion events.
pub const MOTION_SENSOR: Sensor = Sensor::Mov1;

/// The value of every motion event.
pub const MOTION_VALUE: f64 = 1.0;

/// How many motion events a site sees per day, drawn per site and day (SPEC: at least 4–5).
pub const MOTION_EVENTS_PER_DAY: RangeInclusive<u32> = 5..=12;

/// A closed range of values in hundredths, drawn uniformly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CentRange {
    pub min: i64,
    pub max: i64,
}

impl CentRange {
    /// `min..=max` in whole units.
    pub const fn units(min: i64, max: i64) -> CentRange {
        CentRange {
            min: min * 100,
            max: max * 100,
        }
    }

    /// `mean ± spread` in whole units.
    pub const fn around(mean: i64, spread: i64) -> CentRange {
        CentRange::units(mean - spread, mean + spread)
    }

    pub fn min_value(self) -> f64 {
        cents_to_value(self.min)
    }

    pub fn max_value(self) -> f64 {
        cents_to_value(self.max)
    }
}

/// Daily growth of the energy meter Etot, Wh (SPEC: 2600×24 ± 1000).
pub const ETOT_DAILY_GROWTH: CentRange = CentRange::around(2600 * 24, 1000);
/// Daily growth of the water meter Wtot, litres (SPEC: 110 ± 10).
pub const WTOT_DAILY_GROWTH: CentRange = CentRange::around(110, 10);
/// Etot's reading at the start of a run (a meter that has been running for a while).
pub const ETOT_INITIAL: CentRange = CentRange::units(1_000_000, 5_000_000);
/// Wtot's reading at the start of a run.
pub const WTOT_INITIAL: CentRange = CentRange::units(10_000, 50_000);

/// The value range of a 15-minute sensor (SPEC §1), `None` for the meters and Mov1.
pub const fn interval_range(sensor: Sensor) -> Option<CentRange> {
    match sensor {
        Sensor::TH1 | Sensor::TH2 => Some(CentRange::units(12, 35)),
        Sensor::HVAC1 => Some(CentRange::units(0, 100)),
        Sensor::HVAC2 => Some(CentRange::units(0, 200)),
        Sensor::MiAC1 => Some(CentRange::units(0, 150)),
        Sensor::MiAC2 => Some(CentRange::units(0, 200)),
        Sensor::W1 => Some(CentRange::units(0, 1)),
        Sensor::Etot | Sensor::Wtot | Sensor::Mov1 => None,
    }
}

/// A meter's daily growth and initial reading.
pub const fn meter_ranges(sensor: Sensor) -> Option<(CentRange, CentRange)> {
    match sensor {
        Sensor::Etot => Some((ETOT_INITIAL, ETOT_DAILY_GROWTH)),
        Sensor::Wtot => Some((WTOT_INITIAL, WTOT_DAILY_GROWTH)),
        _ => None,
    }
}

/// Hundredths to the value published: the double nearest to the two-decimal number, which
/// JSON prints back as exactly that number.
pub fn cents_to_value(cents: i64) -> f64 {
    cents as f64 / 100.0
}

/// The id of site number `n` (1-based): `s1`, `s2`, … for the prefix `s`.
pub fn site_id(prefix: &str, n: u32) -> String {
    format!("{prefix}{n}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fifteen_minute_sensor_has_a_range_and_no_other_does() {
        for sensor in Sensor::ALL {
            assert_eq!(
                interval_range(sensor).is_some(),
                INTERVAL_SENSORS.contains(&sensor),
                "{sensor}"
            );
            assert_eq!(
                meter_ranges(sensor).is_some(),
                METERS.contains(&sensor),
                "{sensor}"
            );
        }
    }

    #[test]
    fn meter_growth_is_the_spec_mean_plus_or_minus_the_spread() {
        assert_eq!(
            (ETOT_DAILY_GROWTH.min_value(), ETOT_DAILY_GROWTH.max_value()),
            (61_400.0, 63_400.0)
        );
        assert_eq!(
            (WTOT_DAILY_GROWTH.min_value(), WTOT_DAILY_GROWTH.max_value()),
            (100.0, 120.0)
        );
    }

    #[test]
    fn two_decimal_values_print_as_two_decimals() {
        assert_eq!(cents_to_value(1240).to_string(), "12.4");
        assert_eq!(cents_to_value(6_240_037).to_string(), "62400.37");
        assert_eq!(cents_to_value(1).to_string(), "0.01");
    }

    #[test]
    fn sites_are_named_by_prefix_and_number() {
        assert_eq!(site_id("s", 1), "s1");
        assert_eq!(site_id("bldg-", 12), "bldg-12");
    }
}
