//! The oracle: what RedisTimeSeries must hold after a run, computed in plain Rust from the
//! records that were really sent (read back from the topic), straight from SPEC §1–3.
//!
//! It calls neither the plugins nor the host's window code, and shares no code with them:
//! its time arithmetic, lateness rule and formulas are written here again on purpose.

use std::collections::{BTreeMap, HashMap};

use chrono::DateTime;

use crate::topic::TopicRecord;

pub const MINUTE_MS: i64 = 60_000;
pub const STEP_MS: i64 = 15 * MINUTE_MS;
pub const DAY_MS: i64 = 24 * 60 * MINUTE_MS;
/// SPEC §3 default.
pub const ALLOWED_LATENESS_MS: i64 = 2 * DAY_MS;

/// A reading as the oracle understands it.
#[derive(Debug, Clone, PartialEq)]
pub struct SentReading {
    pub site: String,
    pub sensor: String,
    pub ts_ms: i64,
    pub value: f64,
}

/// Parses a JSON reading record of the topic, or `None` when it is not one.
pub fn sent_reading(record: &TopicRecord) -> Option<SentReading> {
    let v: serde_json::Value = serde_json::from_slice(&record.value).ok()?;
    let ts = DateTime::parse_from_rfc3339(v.get("ts")?.as_str()?)
        .ok()?
        .timestamp_millis();
    Some(SentReading {
        site: v.get("site")?.as_str()?.to_owned(),
        sensor: v.get("sensor")?.as_str()?.to_owned(),
        ts_ms: ts,
        value: v.get("value")?.as_f64()?,
    })
}

/// Series → (timestamp → value), the way TS.RANGE shows them.
pub type SeriesValues = BTreeMap<i64, f64>;

/// Everything the oracle expects, keyed by (site, sensor, kind).
#[derive(Debug, Default)]
pub struct Expected {
    pub series: BTreeMap<(String, String, String), SeriesValues>,
}

impl Expected {
    fn put(&mut self, site: &str, sensor: &str, kind: &str, ts: i64, value: f64) {
        self.series
            .entry((site.to_owned(), sensor.to_owned(), kind.to_owned()))
            .or_default()
            .insert(ts, value);
    }

    pub fn of_kind<'a>(
        &'a self,
        kind: &'a str,
    ) -> impl Iterator<Item = (&'a (String, String, String), &'a SeriesValues)> + 'a {
        self.series.iter().filter(move |((_, _, k), _)| k == kind)
    }
}

/// Every expected series is stored with exactly its values, and nothing else is stored
/// (`stored` as `redis_read::all_series` reads it); `what` names the run in the message.
pub fn assert_stored_equals(
    stored: &BTreeMap<(String, String, String), SeriesValues>,
    expected: &Expected,
    what: &str,
) {
    for (key, values) in &expected.series {
        assert_eq!(
            stored.get(key),
            Some(values),
            "{what}: series {key:?} differs from the oracle"
        );
    }
    for key in stored.keys() {
        assert!(
            expected.series.contains_key(key),
            "{what}: series {key:?} is stored but the oracle expects none"
        );
    }
}

/// Day D covers (D 00:00, D+1 00:00]; returns the end instant.
pub fn day_end(ts_ms: i64) -> i64 {
    let floor = (ts_ms - 1).div_euclid(DAY_MS) * DAY_MS;
    floor + DAY_MS
}

#[derive(Default)]
struct DayInputs {
    /// Accepted values of each sensor of the day, in arrival order.
    values: HashMap<String, Vec<f64>>,
    /// Meter readings at the day's start and end instants (last one wins).
    meter_start: HashMap<String, f64>,
    meter_end: HashMap<String, f64>,
}

/// Computes every stored series of a run. `readings` must be in each site's arrival order
/// (the partition order of the topic).
pub fn expected(readings: &[SentReading]) -> Expected {
    expected_with_lateness(readings, ALLOWED_LATENESS_MS)
}

/// How a producer stamps a reading that covers an interval (SPEC §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stamping {
    /// At the interval's end: day D is (D 00:00, D+1 00:00], outputs at D+1 00:00.
    IntervalEnd,
    /// At the interval's start: day D holds the readings stamped D 00:00 … D 23:45, its
    /// outputs are stored at D 00:00; a meter stamped D 23:45 reads the meter at the end of
    /// that last interval (D+1 00:00); a motion event (no interval) at exactly D 00:00 is
    /// day D's.
    IntervalStart,
}

impl Stamping {
    /// When the interval a reading stands for ends, in the interval-end convention.
    fn interval_end(self, r: &SentReading) -> i64 {
        match self {
            Stamping::IntervalEnd => r.ts_ms,
            Stamping::IntervalStart if r.sensor == "Mov1" => r.ts_ms + 1,
            Stamping::IntervalStart => r.ts_ms + STEP_MS,
        }
    }

    /// Where the outputs of the day ending at `end` are stored.
    fn output_ts(self, end: i64) -> i64 {
        match self {
            Stamping::IntervalEnd => end,
            Stamping::IntervalStart => end - DAY_MS,
        }
    }
}

/// [`expected`] for a host run with another `--allowed-lateness`.
pub fn expected_with_lateness(readings: &[SentReading], allowed_lateness_ms: i64) -> Expected {
    expected_stamped(readings, allowed_lateness_ms, Stamping::IntervalEnd)
}

/// [`expected`] for a producer stamping by `stamping` (the host's `--stamps`).
pub fn expected_stamped(
    readings: &[SentReading],
    allowed_lateness_ms: i64,
    stamping: Stamping,
) -> Expected {
    let mut out = Expected::default();
    let mut newest: HashMap<&str, i64> = HashMap::new();
    let mut days: HashMap<&str, BTreeMap<i64, DayInputs>> = HashMap::new();
    for (r, kind) in readings
        .iter()
        .zip(classify_stamped(readings, allowed_lateness_ms, stamping))
    {
        out.put(&r.site, &r.sensor, kind, r.ts_ms, r.value);
        if kind == "LateRej" {
            continue;
        }
        let at = stamping.interval_end(r);
        let end = day_end(at);
        let watermark = newest.get(r.site.as_str()).copied().unwrap_or(i64::MIN);
        newest.insert(&r.site, watermark.max(at));
        let site_days = days.entry(&r.site).or_default();
        let day = site_days.entry(end).or_default();
        day.values
            .entry(r.sensor.clone())
            .or_default()
            .push(r.value);
        if is_meter(&r.sensor) && at == end {
            day.meter_end.insert(r.sensor.clone(), r.value);
            site_days
                .entry(end + DAY_MS)
                .or_default()
                .meter_start
                .insert(r.sensor.clone(), r.value);
        }
    }
    for (site, site_days) in &days {
        let closed_before = newest[site];
        for (&end, day) in site_days {
            if end >= closed_before {
                continue; // still open at the end of the run: not emitted yet
            }
            daily_outputs(&mut out, site, stamping.output_ts(end), day);
        }
    }
    out
}

/// The kind each reading is stored as (`raw`, `LateAccepted` or `LateRej`), by SPEC §3,
/// with each site's watermark advanced by the readings not rejected.
pub fn classify(readings: &[SentReading]) -> Vec<&'static str> {
    classify_with_lateness(readings, ALLOWED_LATENESS_MS)
}

/// [`classify`] for a host run with another `--allowed-lateness`.
pub fn classify_with_lateness(
    readings: &[SentReading],
    allowed_lateness_ms: i64,
) -> Vec<&'static str> {
    classify_stamped(readings, allowed_lateness_ms, Stamping::IntervalEnd)
}

fn classify_stamped(
    readings: &[SentReading],
    allowed_lateness_ms: i64,
    stamping: Stamping,
) -> Vec<&'static str> {
    let mut newest: HashMap<&str, i64> = HashMap::new();
    readings
        .iter()
        .map(|r| {
            let watermark = newest.get(r.site.as_str()).copied().unwrap_or(i64::MIN);
            let at = stamping.interval_end(r);
            let end = day_end(at);
            let kind = if end >= watermark {
                "raw"
            } else if end + allowed_lateness_ms >= watermark {
                "LateAccepted"
            } else {
                "LateRej"
            };
            if kind != "LateRej" {
                newest.insert(&r.site, watermark.max(at));
            }
            kind
        })
        .collect()
}

fn is_meter(sensor: &str) -> bool {
    sensor == "Etot" || sensor == "Wtot"
}

fn sum(values: &[f64]) -> f64 {
    let mut total = 0.0;
    for v in values {
        total += v;
    }
    total
}

/// Puts a day's outputs at `at` (where the stamping stores them).
fn daily_outputs(out: &mut Expected, site: &str, at: i64, day: &DayInputs) {
    let mut agg: HashMap<&str, f64> = HashMap::new();
    for sensor in ["TH1", "TH2"] {
        if let Some(v) = day.values.get(sensor) {
            agg.insert(sensor, sum(v) / v.len() as f64);
        }
    }
    for sensor in ["HVAC1", "HVAC2", "MiAC1", "MiAC2", "W1"] {
        if let Some(v) = day.values.get(sensor) {
            agg.insert(sensor, sum(v));
        }
    }
    if let Some(v) = day.values.get("Mov1") {
        agg.insert("Mov1", v.len() as f64);
    }
    for (sensor, value) in &agg {
        out.put(site, sensor, "AggDay", at, *value);
    }
    let mut diff: HashMap<&str, f64> = HashMap::new();
    for meter in ["Etot", "Wtot"] {
        if let (Some(start), Some(stop)) = (day.meter_start.get(meter), day.meter_end.get(meter)) {
            diff.insert(meter, stop - start);
            out.put(site, meter, "AggDayDiff", at, stop - start);
        }
    }
    let rest = |meter: &str, parts: &[&str]| -> Option<f64> {
        let mut value = *diff.get(meter)?;
        for part in parts {
            value -= *agg.get(part)?;
        }
        Some(value)
    };
    if let Some(v) = rest("Etot", &["HVAC1", "HVAC2", "MiAC1", "MiAC2"]) {
        out.put(site, "Etot", "AggDayRest", at, v);
    }
    if let Some(v) = rest("Wtot", &["W1"]) {
        out.put(site, "Wtot", "AggDayRest", at, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JAN_1: i64 = 1_577_836_800_000;

    fn reading(sensor: &str, ts_ms: i64, value: f64) -> SentReading {
        SentReading {
            site: "s1".into(),
            sensor: sensor.into(),
            ts_ms,
            value,
        }
    }

    #[test]
    fn oracle_puts_a_midnight_reading_in_the_day_before() {
        assert_eq!(day_end(JAN_1 + DAY_MS), JAN_1 + DAY_MS);
        assert_eq!(day_end(JAN_1 + DAY_MS + STEP_MS), JAN_1 + 2 * DAY_MS);
    }

    #[test]
    fn oracle_with_interval_start_stamps_diffs_meters_read_at_each_last_step() {
        let last_step = DAY_MS - STEP_MS;
        let readings = vec![
            reading("Etot", JAN_1 - STEP_MS, 100.0),
            reading("HVAC1", JAN_1, 4.0),
            reading("Etot", JAN_1 + last_step, 160.0),
            reading("HVAC1", JAN_1 + DAY_MS, 1.0),
        ];
        let e = expected_stamped(&readings, ALLOWED_LATENESS_MS, Stamping::IntervalStart);
        let diff = &e.series[&("s1".into(), "Etot".into(), "AggDayDiff".into())];
        assert_eq!(diff.get(&JAN_1), Some(&60.0), "stored at the day's start");
        let agg = &e.series[&("s1".into(), "HVAC1".into(), "AggDay".into())];
        assert_eq!(agg.get(&JAN_1), Some(&4.0));
    }

    #[test]
    fn oracle_emits_a_day_only_after_the_watermark_passes_its_end() {
        let readings = vec![
            reading("HVAC1", JAN_1 + STEP_MS, 2.0),
            reading("HVAC1", JAN_1 + DAY_MS, 3.0),
        ];
        assert!(expected(&readings).of_kind("AggDay").next().is_none());
        let mut more = readings.clone();
        more.push(reading("HVAC1", JAN_1 + DAY_MS + STEP_MS, 1.0));
        let e = expected(&more);
        let (_, values) = e.of_kind("AggDay").next().unwrap();
        assert_eq!(values.get(&(JAN_1 + DAY_MS)), Some(&5.0));
    }
}
