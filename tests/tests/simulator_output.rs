//! What the simulator really puts on a Kafka topic, checked against SPEC §1–2.
//!
//! One run (2 sites × 3 days, fast mode, through the simulator's library publish path) goes
//! to a topic of its own with 2 partitions; every test reads the records back from that
//! topic and checks one rule. The expectations are written here from the SPEC, not taken
//! from the simulator's code.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

use chrono::DateTime;
use iot_simulator::{PublishConfig, PublishReport, SimConfig};
use system_tests::fixture::TestScope;
use system_tests::topic;

// ---- The SPEC, in numbers -------------------------------------------------------------

/// 2020-01-01T00:00:00Z, the run's first instant (step 0).
const JAN_1_2020: i64 = 1_577_836_800_000;
const MINUTE: i64 = 60_000;
const STEP: i64 = 15 * MINUTE;
const DAY: i64 = 24 * 60 * MINUTE;
const STEPS_PER_DAY: i64 = 96;

const DAYS: i64 = 3;
const LAST_STEP: i64 = DAYS * STEPS_PER_DAY;
const SITES: [&str; 2] = ["s1", "s2"];
const SEED: u64 = 2020;

/// SPEC §1: the 15-minute sensors and their uniform value ranges.
const FIFTEEN_MINUTE_SENSORS: [(&str, f64, f64); 7] = [
    ("TH1", 12.0, 35.0),
    ("TH2", 12.0, 35.0),
    ("HVAC1", 0.0, 100.0),
    ("HVAC2", 0.0, 200.0),
    ("MiAC1", 0.0, 150.0),
    ("MiAC2", 0.0, 200.0),
    ("W1", 0.0, 1.0),
];
/// SPEC §1: the cumulative meters, read daily at 00:00, and their daily growth.
const METERS: [(&str, f64, f64); 2] = [
    ("Etot", 2600.0 * 24.0 - 1000.0, 2600.0 * 24.0 + 1000.0),
    ("Wtot", 110.0 - 10.0, 110.0 + 10.0),
];
/// SPEC §1: motion events, value 1, "at least 4–5 a day".
const MOTION: &str = "Mov1";
const MIN_MOTION_EVENTS_PER_DAY: usize = 4;
/// SPEC §2: late W1 readings.
const LATE_SENSOR: &str = "W1";
const LATE_SHORT_EVERY: i64 = 20;
const LATE_SHORT_BACK: i64 = 2 * DAY;
const LATE_LONG_EVERY: i64 = 120;
const LATE_LONG_BACK: i64 = 10 * DAY;
/// Meter differences are differences of two-decimal numbers printed in JSON.
const METER_TOLERANCE: f64 = 1e-6;

// ---- Small factories ------------------------------------------------------------------

/// The instant of step `k`.
fn step_time(k: i64) -> i64 {
    JAN_1_2020 + k * STEP
}

/// Midnight `d` days after the start.
fn midnight(d: i64) -> i64 {
    JAN_1_2020 + d * DAY
}

/// The step of an instant that is a step.
fn step_of(ts: i64) -> i64 {
    assert_eq!(
        (ts - JAN_1_2020) % STEP,
        0,
        "{} is not on a 15-minute step",
        show(ts)
    );
    (ts - JAN_1_2020) / STEP
}

fn show(ts: i64) -> String {
    DateTime::from_timestamp_millis(ts)
        .map(|t| t.to_rfc3339())
        .unwrap_or_else(|| ts.to_string())
}

fn range_of(sensor: &str) -> Option<(f64, f64)> {
    FIFTEEN_MINUTE_SENSORS
        .iter()
        .find(|(s, _, _)| *s == sensor)
        .map(|&(_, lo, hi)| (lo, hi))
}

fn is_meter(sensor: &str) -> bool {
    METERS.iter().any(|(m, _, _)| *m == sensor)
}

// ---- The run, read back ---------------------------------------------------------------

/// One record of the topic.
#[derive(Debug, Clone)]
struct Record {
    partition: i32,
    offset: i64,
    key: Option<String>,
    site: String,
    sensor: String,
    ts: i64,
    value: f64,
}

struct Run {
    report: PublishReport,
    records: Vec<Record>,
}

/// The one simulator run of this test binary: published to a fresh 2-partition topic,
/// read back, and the topic deleted again.
fn run() -> &'static Run {
    static RUN: OnceLock<Run> = OnceLock::new();
    RUN.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut scope = TestScope::new("simulator_output");
            let topic = scope.create_topic("readings", 2).await;
            let sim = SimConfig {
                sites: SITES.len() as u32,
                seed: SEED,
                start_ms: JAN_1_2020,
                days: Some(DAYS as u32),
                site_prefix: "s".to_owned(),
            };
            let config =
                PublishConfig::fast(scope.services.kafka_bootstrap.clone(), topic.clone(), sim);
            let report = iot_simulator::publish(config, Arc::new(AtomicBool::new(false)))
                .await
                .expect("the simulator publishes");
            assert_eq!(report.failure, None, "{report}");
            let records = topic::read_all(&scope.services.kafka_bootstrap, &topic)
                .into_iter()
                .map(parse)
                .collect();
            Run { report, records }
        })
    })
}

fn parse(record: topic::TopicRecord) -> Record {
    let json = record.json();
    let field = |name: &str| {
        json.get(name)
            .unwrap_or_else(|| panic!("record without {name}: {json}"))
    };
    let ts = field("ts").as_str().expect("ts is a string");
    Record {
        partition: record.partition,
        offset: record.offset,
        key: record.key.clone(),
        site: field("site").as_str().expect("site is a string").to_owned(),
        sensor: field("sensor")
            .as_str()
            .expect("sensor is a string")
            .to_owned(),
        ts: DateTime::parse_from_rfc3339(ts)
            .unwrap_or_else(|e| panic!("ts {ts:?}: {e}"))
            .timestamp_millis(),
        value: field("value").as_f64().expect("value is a number"),
    }
}

/// A site's records in partition order, each placed in the step that sent it.
struct SiteStream {
    /// On-time readings (15-minute, meters, motion) with their step.
    on_time: Vec<(i64, Record)>,
    /// Late W1 readings with the step that sent them.
    late: Vec<(i64, Record)>,
}

impl SiteStream {
    fn of_sensor(&self, sensor: &str) -> Vec<&Record> {
        self.on_time
            .iter()
            .map(|(_, r)| r)
            .filter(|r| r.sensor == sensor)
            .collect()
    }
}

/// Walks a site's records in offset order. A step begins with the first record stamped at a
/// later step instant; within it come the on-time readings (stamped at the step, or motion
/// inside the step's interval), then the late W1 readings (stamped before the step).
fn site_stream(site: &str) -> SiteStream {
    let mut records: Vec<&Record> = run().records.iter().filter(|r| r.site == site).collect();
    records.sort_by_key(|r| (r.partition, r.offset));
    let mut current: Option<i64> = None;
    let mut late_seen_in_step = false;
    let mut stream = SiteStream {
        on_time: Vec::new(),
        late: Vec::new(),
    };
    for r in records {
        let on_step_sensor = range_of(&r.sensor).is_some() || is_meter(&r.sensor);
        if on_step_sensor && current.is_none_or(|t| r.ts > t) {
            current = Some(r.ts);
            late_seen_in_step = false;
        }
        let t = current.unwrap_or_else(|| panic!("{site}: {r:?} comes before any step"));
        let k = step_of(t);
        if r.sensor == MOTION {
            assert!(
                t - STEP < r.ts && r.ts <= t,
                "{site}: motion at {} sent in step {}",
                show(r.ts),
                show(t)
            );
            assert!(
                !late_seen_in_step,
                "{site}: motion {r:?} after the late readings of its step"
            );
            stream.on_time.push((k, r.clone()));
        } else if r.ts == t {
            assert!(on_step_sensor, "{site}: unknown sensor in {r:?}");
            assert!(
                !late_seen_in_step,
                "{site}: on-time {r:?} after the late readings of its step"
            );
            stream.on_time.push((k, r.clone()));
        } else {
            assert!(
                r.sensor == LATE_SENSOR && r.ts < t,
                "{site}: {r:?} goes back in time in step {} and is not a late {LATE_SENSOR} reading",
                show(t)
            );
            late_seen_in_step = true;
            stream.late.push((k, r.clone()));
        }
    }
    stream
}

// ---- The rules ------------------------------------------------------------------------

#[test]
fn every_reading_sent_is_on_the_topic_and_acknowledged() {
    let run = run();
    assert_eq!(run.report.acknowledged, run.report.summary.total());
    assert_eq!(run.records.len() as u64, run.report.summary.total());
    assert!(!run.report.interrupted);
    assert_eq!(run.report.steps, LAST_STEP as u64 + 1);
}

#[test]
fn each_site_lives_in_one_partition_and_is_keyed_by_its_id() {
    let mut partitions: BTreeMap<&str, BTreeSet<i32>> = BTreeMap::new();
    for r in &run().records {
        assert_eq!(r.key.as_deref(), Some(r.site.as_str()), "{r:?}");
        partitions
            .entry(r.site.as_str())
            .or_default()
            .insert(r.partition);
    }
    assert_eq!(partitions.keys().copied().collect::<Vec<_>>(), SITES);
    for (site, parts) in partitions {
        assert_eq!(parts.len(), 1, "{site} is spread over partitions {parts:?}");
    }
}

#[test]
fn every_fifteen_minute_sensor_reports_once_at_each_interval_end() {
    let expected: Vec<i64> = (1..=LAST_STEP).map(step_time).collect();
    for site in SITES {
        let stream = site_stream(site);
        for (sensor, _, _) in FIFTEEN_MINUTE_SENSORS {
            let stamps: Vec<i64> = stream.of_sensor(sensor).iter().map(|r| r.ts).collect();
            assert_eq!(stamps, expected, "{site} {sensor}");
            for d in 0..DAYS {
                let in_day = stamps
                    .iter()
                    .filter(|&&ts| midnight(d) < ts && ts <= midnight(d + 1))
                    .count();
                assert_eq!(in_day, 96, "{site} {sensor} day {d}");
            }
            assert!(stamps.contains(&(midnight(0) + STEP)) && stamps.contains(&midnight(1)));
        }
    }
}

#[test]
fn fifteen_minute_values_stay_within_the_spec_ranges() {
    for site in SITES {
        let stream = site_stream(site);
        let all = stream.on_time.iter().chain(&stream.late).map(|(_, r)| r);
        for r in all.filter(|r| range_of(&r.sensor).is_some()) {
            let (lo, hi) = range_of(&r.sensor).unwrap();
            assert!(
                lo <= r.value && r.value <= hi,
                "{site}: {r:?} outside {lo}..{hi}"
            );
        }
    }
}

#[test]
fn meters_are_read_at_every_midnight_and_grow_within_the_daily_bounds() {
    for site in SITES {
        let stream = site_stream(site);
        for (meter, least, most) in METERS {
            let readings = stream.of_sensor(meter);
            let stamps: Vec<i64> = readings.iter().map(|r| r.ts).collect();
            assert_eq!(
                stamps,
                (0..=DAYS).map(midnight).collect::<Vec<_>>(),
                "{site} {meter}"
            );
            for pair in readings.windows(2) {
                let growth = pair[1].value - pair[0].value;
                assert!(
                    least - METER_TOLERANCE <= growth && growth <= most + METER_TOLERANCE,
                    "{site} {meter} grew {growth} up to {}",
                    show(pair[1].ts)
                );
            }
        }
    }
}

#[test]
fn motion_events_have_value_one_and_come_at_least_four_times_a_day_in_order() {
    for site in SITES {
        let events = site_stream(site)
            .of_sensor(MOTION)
            .into_iter()
            .cloned()
            .collect::<Vec<_>>();
        assert!(
            events.iter().all(|r| r.value == 1.0),
            "{site}: a motion event is not 1"
        );
        assert!(
            events.windows(2).all(|w| w[0].ts <= w[1].ts),
            "{site}: motion out of time order"
        );
        for d in 0..DAYS {
            let count = events
                .iter()
                .filter(|r| midnight(d) < r.ts && r.ts <= midnight(d + 1))
                .count();
            assert!(
                count >= MIN_MOTION_EVENTS_PER_DAY,
                "{site} day {d}: {count} motion events"
            );
        }
        assert!(events
            .iter()
            .all(|r| midnight(0) < r.ts && r.ts <= midnight(DAYS)));
    }
}

#[test]
fn late_w1_readings_come_every_20_steps_two_days_back_and_every_120_steps_ten_days_back() {
    for site in SITES {
        let stream = site_stream(site);
        let sent_at = |back: i64| -> Vec<i64> {
            stream
                .late
                .iter()
                .filter(|(k, r)| step_time(*k) - r.ts == back)
                .map(|(k, _)| *k)
                .collect()
        };
        let every = |n: i64| -> Vec<i64> { (1..=LAST_STEP).filter(|k| k % n == 0).collect() };
        assert_eq!(
            sent_at(LATE_SHORT_BACK),
            every(LATE_SHORT_EVERY),
            "{site}: 2-day-late readings"
        );
        assert_eq!(
            sent_at(LATE_LONG_BACK),
            every(LATE_LONG_EVERY),
            "{site}: 10-day-late readings"
        );
        assert_eq!(
            stream.late.len(),
            every(LATE_SHORT_EVERY).len() + every(LATE_LONG_EVERY).len()
        );
    }
}

#[test]
fn a_site_sends_nothing_but_its_steps_readings() {
    for site in SITES {
        let stream = site_stream(site);
        let motion = stream.of_sensor(MOTION).len();
        let expected = FIFTEEN_MINUTE_SENSORS.len() * LAST_STEP as usize
            + METERS.len() * (DAYS as usize + 1)
            + motion
            + stream.late.len();
        let all = run().records.iter().filter(|r| r.site == site).count();
        assert_eq!(all, expected, "{site}");
        // Step 0 sends only the initial meters.
        let step0: Vec<&str> = stream
            .on_time
            .iter()
            .filter(|(k, _)| *k == 0)
            .map(|(_, r)| r.sensor.as_str())
            .collect();
        assert_eq!(step0, ["Etot", "Wtot"], "{site}");
    }
}
