//! The alarm oracle: which alarms the three shipped rules must raise, computed in plain
//! Rust from the readings that were really sent, from the rules' documented definitions.
//! It calls neither the plugins nor the host's window code.
//!
//! The rules see the readings a site's day window accepted, in the order they arrived (a
//! site's readings share a partition, so the topic's order is the arrival order). Rejected
//! readings (`LateRej`) raise nothing; accepted late ones count in the day they belong to.

use std::collections::{BTreeMap, HashMap};

use crate::oracle::{self, SentReading, SeriesValues, DAY_MS, MINUTE_MS};

/// An alarm the oracle expects: (site, rule output's name) → (instant → value).
pub type ExpectedAlarms = BTreeMap<(String, String), BTreeMap<i64, f64>>;

/// `motion-at-night`: a motion event (non-zero `Mov1`) whose local time of day, at UTC +
/// `utc_offset_ms`, is in [`from_ms`, `to_ms`) (not wrapping midnight here). Value 1.
#[derive(Debug, Clone, Copy)]
pub struct NightRule {
    pub from_ms: i64,
    pub to_ms: i64,
    pub utc_offset_ms: i64,
}

/// `motion-low-energy`: a motion event while the energy sensors' readings accepted so far
/// in the day add up to less than `threshold`. Value: that energy.
#[derive(Debug, Clone)]
pub struct LowEnergyRule {
    pub threshold: f64,
    pub energy_sensors: Vec<&'static str>,
}

/// `out-of-band`: the `readings`-th consecutive reading of `sensor` outside [low, high]
/// within a day, once per run. Value: that reading.
#[derive(Debug, Clone, Copy)]
pub struct BandRule {
    pub sensor: &'static str,
    pub low: f64,
    pub high: f64,
    pub readings: u32,
}

/// The accepted readings of each site's day windows, in arrival order, by (site, day end).
fn accepted_by_window(sent: &[SentReading]) -> BTreeMap<(String, i64), Vec<&SentReading>> {
    let kinds = oracle::classify(sent);
    let mut windows: BTreeMap<(String, i64), Vec<&SentReading>> = BTreeMap::new();
    for (reading, kind) in sent.iter().zip(kinds) {
        if kind != "LateRej" {
            windows
                .entry((reading.site.clone(), oracle::day_end(reading.ts_ms)))
                .or_default()
                .push(reading);
        }
    }
    windows
}

fn put(expected: &mut ExpectedAlarms, site: &str, rule: &str, ts_ms: i64, value: f64) {
    expected
        .entry((site.to_owned(), rule.to_owned()))
        .or_default()
        .insert(ts_ms, value);
}

pub fn night_alarms(sent: &[SentReading], rule_name: &str, rule: NightRule) -> ExpectedAlarms {
    let mut expected = ExpectedAlarms::new();
    for ((site, _), readings) in accepted_by_window(sent) {
        for motion in readings
            .iter()
            .filter(|r| r.sensor == "Mov1" && r.value != 0.0)
        {
            let local = (motion.ts_ms + rule.utc_offset_ms).rem_euclid(DAY_MS);
            if (rule.from_ms..rule.to_ms).contains(&local) {
                put(&mut expected, &site, rule_name, motion.ts_ms, 1.0);
            }
        }
    }
    expected
}

pub fn low_energy_alarms(
    sent: &[SentReading],
    rule_name: &str,
    rule: &LowEnergyRule,
) -> ExpectedAlarms {
    let mut expected = ExpectedAlarms::new();
    for ((site, _), readings) in accepted_by_window(sent) {
        let mut energy = 0.0;
        for reading in readings {
            if rule.energy_sensors.contains(&reading.sensor.as_str()) {
                energy += reading.value;
            } else if reading.sensor == "Mov1" && reading.value != 0.0 && energy < rule.threshold {
                put(&mut expected, &site, rule_name, reading.ts_ms, energy);
            }
        }
    }
    expected
}

pub fn band_alarms(sent: &[SentReading], rule_name: &str, rule: BandRule) -> ExpectedAlarms {
    let mut expected = ExpectedAlarms::new();
    for ((site, _), readings) in accepted_by_window(sent) {
        let mut run = 0;
        for reading in readings.iter().filter(|r| r.sensor == rule.sensor) {
            if reading.value >= rule.low && reading.value <= rule.high {
                run = 0;
                continue;
            }
            run += 1;
            if run == rule.readings {
                put(
                    &mut expected,
                    &site,
                    rule_name,
                    reading.ts_ms,
                    reading.value,
                );
            }
        }
    }
    expected
}

/// `HH:MM` as milliseconds after midnight.
pub fn hh_mm(hours: i64, minutes: i64) -> i64 {
    (hours * 60 + minutes) * MINUTE_MS
}

/// Merges several rules' expectations.
pub fn merged(parts: impl IntoIterator<Item = ExpectedAlarms>) -> ExpectedAlarms {
    let mut all = ExpectedAlarms::new();
    for part in parts {
        all.extend(part);
    }
    all
}

/// How many alarms in all.
pub fn count(expected: &ExpectedAlarms) -> usize {
    expected.values().map(BTreeMap::len).sum()
}

/// The rules by name, for counting per rule in messages.
pub fn per_rule(expected: &ExpectedAlarms) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for ((_, rule), alarms) in expected {
        *counts.entry(rule.clone()).or_default() += alarms.len();
    }
    counts
}

/// The alarm outputs of `host/pipelines/alarms.toml` (what `scripts/run-local` adds to the
/// reference pipeline).
pub const SHIPPED_ALARM_OUTPUTS: &str = include_str!("../../host/pipelines/alarms.toml");

/// `NightMotion` of `host/pipelines/alarms.toml`.
pub const SHIPPED_NIGHT: NightRule = NightRule {
    from_ms: 2 * 3_600_000,
    to_ms: 6 * 3_600_000,
    utc_offset_ms: 3_600_000,
};
/// `TH1Band` of `host/pipelines/alarms.toml` (`TH2Band` is the same for TH2).
pub const SHIPPED_BAND: BandRule = BandRule {
    sensor: "TH1",
    low: 14.0,
    high: 33.0,
    readings: 2,
};
/// `LowEnergyMotion` of `host/pipelines/alarms.toml`.
pub const SHIPPED_ENERGY_THRESHOLD_WH: f64 = 2_000.0;
pub const SHIPPED_ENERGY_SENSORS: [&str; 4] = ["HVAC1", "HVAC2", "MiAC1", "MiAC2"];

/// The reference pipeline followed by the shipped alarm outputs, after checking that the
/// file still sets the parameters the constants above assume.
pub fn reference_with_shipped_alarms() -> String {
    for (param, value) in [
        ("from", "\"02:00\""),
        ("to", "\"06:00\""),
        ("utc_offset", "\"+01:00\""),
        ("threshold", "2000"),
        ("low", "14"),
        ("high", "33"),
        ("readings", "2"),
    ] {
        assert!(
            SHIPPED_ALARM_OUTPUTS.contains(&format!("{param} = {value}")),
            "host/pipelines/alarms.toml sets {param} = {value}, as the oracle's rules assume"
        );
    }
    format!(
        "{}\n{SHIPPED_ALARM_OUTPUTS}",
        crate::live_host::REFERENCE_PIPELINE
    )
}

/// The alarms the shipped alarm outputs must raise for `sent`.
pub fn shipped_alarms(sent: &[SentReading]) -> ExpectedAlarms {
    let energy = LowEnergyRule {
        threshold: SHIPPED_ENERGY_THRESHOLD_WH,
        energy_sensors: SHIPPED_ENERGY_SENSORS.to_vec(),
    };
    merged([
        night_alarms(sent, "NightMotion", SHIPPED_NIGHT),
        low_energy_alarms(sent, "LowEnergyMotion", &energy),
        band_alarms(sent, "TH1Band", SHIPPED_BAND),
        band_alarms(
            sent,
            "TH2Band",
            BandRule {
                sensor: "TH2",
                ..SHIPPED_BAND
            },
        ),
    ])
}

/// The expected alarms as stored series: (site, output, "Alarm") → values.
pub fn as_series(expected: &ExpectedAlarms) -> BTreeMap<(String, String, String), SeriesValues> {
    expected
        .iter()
        .map(|((site, rule), alarms)| {
            (
                (site.clone(), rule.clone(), "Alarm".to_owned()),
                alarms.clone(),
            )
        })
        .collect()
}
