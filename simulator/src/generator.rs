//! The deterministic generator: a run's readings, step by step, in the order fixed in
//! docs/ARCHITECTURE.md.
//!
//! Within a step, per site (s1, s2, …): the seven 15-minute readings (TH1, TH2, HVAC1,
//! HVAC2, MiAC1, MiAC2, W1), the meters Etot and Wtot if the step is a midnight, the
//! motion events of the step's interval in time order, then the late W1 readings (2 days
//! back if `k % 20 == 0`, then 10 days back if `k % 120 == 0`).
//!
//! Each site draws from its own ChaCha stream (seed = `--seed`, stream = site number), in
//! step order: site 1's readings do not depend on how many sites run, nor on how long.

use std::borrow::Cow;

use anyhow::bail;
use iot_protocol::time::{day_floor, format_ts, DAY_MS, STEP_MS};
use iot_protocol::{Reading, Sensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::clock::{self, LATE_LONG_MS, LATE_SHORT_MS};
use crate::fleet::{self, CentRange};

/// What to simulate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimConfig {
    /// Number of sites, each with the ten sensors.
    pub sites: u32,
    /// The run's seed: the same seed gives the same readings.
    pub seed: u64,
    /// Step 0, a UTC midnight (ms).
    pub start_ms: i64,
    /// `Some(n)`: steps `0..=96·n`, ending at the midnight `n` days after the start.
    /// `None`: no end.
    pub days: Option<u32>,
    /// Site ids are the prefix and the site's number: `s1`, `s2`, …
    pub site_prefix: String,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            sites: 1,
            seed: 42,
            start_ms: clock::default_fast_start(),
            days: None,
            site_prefix: "s".to_owned(),
        }
    }
}

/// Why a reading is sent; the summary counts by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReadingKind {
    /// A 15-minute reading stamped at its interval's end.
    Interval,
    /// A cumulative meter at midnight.
    Meter,
    /// A motion event.
    Motion,
    /// The W1 reading stamped 2 days back, every 20 steps.
    LateShort,
    /// The W1 reading stamped 10 days back, every 120 steps.
    LateLong,
}

impl ReadingKind {
    pub const ALL: [ReadingKind; 5] = [
        ReadingKind::Interval,
        ReadingKind::Meter,
        ReadingKind::Motion,
        ReadingKind::LateShort,
        ReadingKind::LateLong,
    ];
    pub const COUNT: usize = 5;

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn label(self) -> &'static str {
        match self {
            ReadingKind::Interval => "15-minute",
            ReadingKind::Meter => "meters",
            ReadingKind::Motion => "motion",
            ReadingKind::LateShort => "late 2-day",
            ReadingKind::LateLong => "late 10-day",
        }
    }
}

/// One generated reading. `site` is the 0-based index into [`Generator::site_ids`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimReading {
    pub site: u32,
    pub kind: ReadingKind,
    pub sensor: Sensor,
    pub ts_ms: i64,
    pub value: f64,
}

/// One step of a run with all its readings.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub k: u64,
    pub ts_ms: i64,
    pub readings: Vec<SimReading>,
}

/// One site's random stream and state.
#[derive(Debug, Clone)]
struct SiteGen {
    index: u32,
    rng: ChaCha8Rng,
    /// Meter readings in hundredths, in [`fleet::METERS`] order.
    meters: [i64; 2],
    /// The day whose motion events are planned (its midnight), and those events, sorted.
    motion_day: Option<i64>,
    motion: Vec<i64>,
    next_motion: usize,
}

impl SiteGen {
    fn new(seed: u64, index: u32) -> SiteGen {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(u64::from(index) + 1);
        let meters = fleet::METERS.map(|m| {
            let (initial, _) = fleet::meter_ranges(m).expect("a meter");
            draw(&mut rng, initial)
        });
        SiteGen {
            index,
            rng,
            meters,
            motion_day: None,
            motion: Vec::new(),
            next_motion: 0,
        }
    }

    fn step(&mut self, k: u64, t: i64, out: &mut Vec<SimReading>) {
        let site = self.index;
        let mut push = |kind, sensor, ts_ms, value| {
            out.push(SimReading {
                site,
                kind,
                sensor,
                ts_ms,
                value,
            })
        };
        if k > 0 {
            for sensor in fleet::INTERVAL_SENSORS {
                let range = fleet::interval_range(sensor).expect("a 15-minute sensor");
                push(
                    ReadingKind::Interval,
                    sensor,
                    t,
                    fleet::cents_to_value(draw(&mut self.rng, range)),
                );
            }
        }
        if clock::is_midnight(t) {
            for (i, meter) in fleet::METERS.into_iter().enumerate() {
                if k > 0 {
                    let (_, growth) = fleet::meter_ranges(meter).expect("a meter");
                    self.meters[i] += draw(&mut self.rng, growth);
                }
                push(
                    ReadingKind::Meter,
                    meter,
                    t,
                    fleet::cents_to_value(self.meters[i]),
                );
            }
        }
        if k > 0 {
            // The interval (t − 15 min, t] lies in the day (D, D + 1 day] with D = floor(t − 1).
            let day = day_floor(t - 1);
            if self.motion_day != Some(day) {
                self.plan_motion(day);
            }
            while let Some(&ts) = self.motion.get(self.next_motion) {
                if ts > t {
                    break;
                }
                debug_assert!(ts > t - STEP_MS);
                push(
                    ReadingKind::Motion,
                    fleet::MOTION_SENSOR,
                    ts,
                    fleet::MOTION_VALUE,
                );
                self.next_motion += 1;
            }
        }
        let w1 = fleet::interval_range(fleet::LATE_SENSOR).expect("W1 has a range");
        if clock::sends_late_short(k) {
            let value = fleet::cents_to_value(draw(&mut self.rng, w1));
            push(
                ReadingKind::LateShort,
                fleet::LATE_SENSOR,
                t - LATE_SHORT_MS,
                value,
            );
        }
        if clock::sends_late_long(k) {
            let value = fleet::cents_to_value(draw(&mut self.rng, w1));
            push(
                ReadingKind::LateLong,
                fleet::LATE_SENSOR,
                t - LATE_LONG_MS,
                value,
            );
        }
    }

    /// Draws the motion events of the day (D, D + 1 day]: distinct whole seconds.
    fn plan_motion(&mut self, day: i64) {
        let count = self.rng.random_range(fleet::MOTION_EVENTS_PER_DAY) as usize;
        const SECONDS_PER_DAY: usize = (DAY_MS / 1000) as usize;
        self.motion.clear();
        self.motion.extend(
            rand::seq::index::sample(&mut self.rng, SECONDS_PER_DAY, count)
                .into_iter()
                .map(|s| day + (s as i64 + 1) * 1000),
        );
        self.motion.sort_unstable();
        self.motion_day = Some(day);
        self.next_motion = 0;
    }
}

fn draw(rng: &mut ChaCha8Rng, range: CentRange) -> i64 {
    rng.random_range(range.min..=range.max)
}

/// The stepper: call [`Generator::next_step_into`] (no allocation per step) or iterate
/// ([`Step`]s).
#[derive(Debug, Clone)]
pub struct Generator {
    config: SimConfig,
    site_ids: Vec<String>,
    sites: Vec<SiteGen>,
    next_k: u64,
}

impl Generator {
    pub fn new(config: SimConfig) -> anyhow::Result<Generator> {
        if config.sites == 0 {
            bail!("--sites must be at least 1");
        }
        if !clock::is_midnight(config.start_ms) {
            bail!(
                "the start {} is not a UTC midnight",
                format_ts(config.start_ms)
            );
        }
        let site_ids = (1..=config.sites)
            .map(|n| fleet::site_id(&config.site_prefix, n))
            .collect();
        let sites = (0..config.sites)
            .map(|i| SiteGen::new(config.seed, i))
            .collect();
        Ok(Generator {
            config,
            site_ids,
            sites,
            next_k: 0,
        })
    }

    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// Site ids by index: `site_ids()[r.site]` is the site of reading `r`.
    pub fn site_ids(&self) -> &[String] {
        &self.site_ids
    }

    /// Number of steps of the whole run (`None`: no end).
    pub fn total_steps(&self) -> Option<u64> {
        self.config.days.map(|d| clock::last_step(d) + 1)
    }

    /// The step the next call produces.
    pub fn next_k(&self) -> u64 {
        self.next_k
    }

    /// Replaces `out` with the next step's readings and returns `(k, t)`, or `None` after
    /// the last step.
    pub fn next_step_into(&mut self, out: &mut Vec<SimReading>) -> Option<(u64, i64)> {
        out.clear();
        let k = self.next_k;
        if let Some(days) = self.config.days {
            if k > clock::last_step(days) {
                return None;
            }
        }
        let t = clock::step_ts(self.config.start_ms, k);
        for site in &mut self.sites {
            site.step(k, t, out);
        }
        self.next_k += 1;
        Some((k, t))
    }

    /// The protocol reading of `r`, borrowing its site id.
    pub fn reading(&self, r: &SimReading) -> Reading<'_> {
        Reading {
            site: Cow::Borrowed(self.site_ids[r.site as usize].as_str()),
            sensor: r.sensor,
            ts_ms: r.ts_ms,
            value: r.value,
        }
    }
}

impl Iterator for Generator {
    type Item = Step;

    fn next(&mut self) -> Option<Step> {
        let mut readings = Vec::with_capacity(self.sites.len() * 12);
        let (k, ts_ms) = self.next_step_into(&mut readings)?;
        Some(Step { k, ts_ms, readings })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JAN_1_2020: i64 = 1_577_836_800_000;
    const HOUR_MS: i64 = 3_600_000;

    fn config(sites: u32, seed: u64, days: Option<u32>) -> SimConfig {
        SimConfig {
            sites,
            seed,
            start_ms: JAN_1_2020,
            days,
            site_prefix: "s".into(),
        }
    }

    fn run(sites: u32, seed: u64, days: u32) -> Vec<Step> {
        Generator::new(config(sites, seed, Some(days)))
            .unwrap()
            .collect()
    }

    fn of_site(steps: &[Step], site: u32) -> Vec<SimReading> {
        steps
            .iter()
            .flat_map(|s| s.readings.iter().filter(|r| r.site == site).copied())
            .collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_readings_and_another_seed_others() {
        assert_eq!(run(2, 7, 3), run(2, 7, 3));
        assert_ne!(of_site(&run(1, 7, 1), 0), of_site(&run(1, 8, 1), 0));
    }

    #[test]
    fn adding_sites_or_days_does_not_change_site_one() {
        let alone = of_site(&run(1, 42, 2), 0);
        let with_others = of_site(&run(5, 42, 2), 0);
        assert_eq!(alone, with_others);
        let longer = of_site(&run(1, 42, 4), 0);
        assert_eq!(alone, longer[..alone.len()]);
        let endless: Vec<Step> = Generator::new(config(1, 42, None))
            .unwrap()
            .take(2 * 96 + 1)
            .collect();
        assert_eq!(alone, of_site(&endless, 0));
    }

    #[test]
    fn sites_draw_different_values() {
        let steps = run(2, 42, 1);
        let values = |site| {
            of_site(&steps, site)
                .iter()
                .map(|r| r.value)
                .collect::<Vec<_>>()
        };
        assert_ne!(values(0), values(1));
    }

    #[test]
    fn step_zero_sends_only_the_initial_meters_at_the_start() {
        let step0 = Generator::new(config(2, 42, Some(1)))
            .unwrap()
            .next()
            .unwrap();
        assert_eq!((step0.k, step0.ts_ms), (0, JAN_1_2020));
        let shape: Vec<_> = step0
            .readings
            .iter()
            .map(|r| (r.site, r.sensor, r.ts_ms))
            .collect();
        assert_eq!(
            shape,
            [
                (0, Sensor::Etot, JAN_1_2020),
                (0, Sensor::Wtot, JAN_1_2020),
                (1, Sensor::Etot, JAN_1_2020),
                (1, Sensor::Wtot, JAN_1_2020)
            ]
        );
    }

    #[test]
    fn a_step_lists_per_site_interval_readings_then_meters_then_motion_then_late() {
        let steps = run(3, 42, 3);
        for step in &steps {
            // Sites in order, each site's readings contiguous.
            let sites: Vec<u32> = step.readings.iter().map(|r| r.site).collect();
            assert!(sites.windows(2).all(|w| w[0] <= w[1]), "step {}", step.k);
            for site in 0..3 {
                let rs: Vec<&SimReading> =
                    step.readings.iter().filter(|r| r.site == site).collect();
                let kinds: Vec<ReadingKind> = rs.iter().map(|r| r.kind).collect();
                assert!(
                    kinds.windows(2).all(|w| w[0] <= w[1]),
                    "step {}: {kinds:?}",
                    step.k
                );
                let interval: Vec<Sensor> = rs
                    .iter()
                    .filter(|r| r.kind == ReadingKind::Interval)
                    .map(|r| r.sensor)
                    .collect();
                if step.k > 0 {
                    assert_eq!(interval, fleet::INTERVAL_SENSORS);
                }
                let meters: Vec<Sensor> = rs
                    .iter()
                    .filter(|r| r.kind == ReadingKind::Meter)
                    .map(|r| r.sensor)
                    .collect();
                let midnight = step.k % 96 == 0;
                assert_eq!(
                    meters,
                    if midnight {
                        fleet::METERS.to_vec()
                    } else {
                        vec![]
                    },
                    "step {}",
                    step.k
                );
                for r in rs
                    .iter()
                    .filter(|r| matches!(r.kind, ReadingKind::Interval | ReadingKind::Meter))
                {
                    assert_eq!(r.ts_ms, step.ts_ms);
                }
                let motion: Vec<i64> = rs
                    .iter()
                    .filter(|r| r.kind == ReadingKind::Motion)
                    .map(|r| r.ts_ms)
                    .collect();
                assert!(motion.windows(2).all(|w| w[0] < w[1]));
                assert!(motion
                    .iter()
                    .all(|&ts| step.ts_ms - STEP_MS < ts && ts <= step.ts_ms));
                let late: Vec<(ReadingKind, i64)> = rs
                    .iter()
                    .filter(|r| matches!(r.kind, ReadingKind::LateShort | ReadingKind::LateLong))
                    .map(|r| (r.kind, step.ts_ms - r.ts_ms))
                    .collect();
                let mut expected = vec![];
                if step.k > 0 && step.k % 20 == 0 {
                    expected.push((ReadingKind::LateShort, 48 * HOUR_MS));
                }
                if step.k > 0 && step.k % 120 == 0 {
                    expected.push((ReadingKind::LateLong, 240 * HOUR_MS));
                }
                assert_eq!(late, expected, "step {}", step.k);
            }
        }
        assert_eq!(steps.len(), 3 * 96 + 1);
    }

    #[test]
    fn values_stay_in_their_ranges_with_at_most_two_decimals() {
        for r in run(3, 1, 5).iter().flat_map(|s| s.readings.iter()) {
            let text = r.value.to_string();
            let decimals = text.split_once('.').map_or(0, |(_, d)| d.len());
            assert!(decimals <= 2, "{r:?} prints as {text}");
            match r.kind {
                ReadingKind::Interval | ReadingKind::LateShort | ReadingKind::LateLong => {
                    let range = fleet::interval_range(r.sensor).unwrap();
                    assert!(
                        range.min_value() <= r.value && r.value <= range.max_value(),
                        "{r:?}"
                    );
                }
                ReadingKind::Motion => assert_eq!(r.value, 1.0),
                ReadingKind::Meter => assert!(r.value > 0.0),
            }
        }
    }

    #[test]
    fn meters_grow_daily_within_the_spec_bounds() {
        let steps = run(2, 3, 6);
        for site in 0..2 {
            for (meter, lo, hi) in [
                (Sensor::Etot, 61_400.0, 63_400.0),
                (Sensor::Wtot, 100.0, 120.0),
            ] {
                let readings: Vec<SimReading> = of_site(&steps, site)
                    .into_iter()
                    .filter(|r| r.sensor == meter)
                    .collect();
                assert_eq!(readings.len(), 7);
                for (d, pair) in readings.windows(2).enumerate() {
                    assert_eq!(pair[0].ts_ms, JAN_1_2020 + d as i64 * DAY_MS);
                    let growth = pair[1].value - pair[0].value;
                    assert!(
                        lo - 1e-6 <= growth && growth <= hi + 1e-6,
                        "{meter} day {d}: {growth}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_day_has_five_to_twelve_distinct_motion_events_inside_it() {
        let steps = run(4, 9, 10);
        for site in 0..4 {
            let motion: Vec<i64> = of_site(&steps, site)
                .iter()
                .filter(|r| r.sensor == Sensor::Mov1)
                .map(|r| r.ts_ms)
                .collect();
            assert!(motion.windows(2).all(|w| w[0] < w[1]));
            assert!(motion.iter().all(|ts| ts % 1000 == 0));
            for d in 0..10 {
                let day = JAN_1_2020 + d * DAY_MS;
                let n = motion
                    .iter()
                    .filter(|&&ts| day < ts && ts <= day + DAY_MS)
                    .count();
                assert!((5..=12).contains(&n), "site {site} day {d}: {n}");
            }
        }
    }

    #[test]
    fn readings_convert_to_records_that_round_trip() {
        let mut generator = Generator::new(config(2, 42, Some(1))).unwrap();
        let steps: Vec<Step> = generator.by_ref().collect();
        for r in steps.iter().flat_map(|s| &s.readings) {
            let reading = generator.reading(r);
            assert_eq!(reading.site, format!("s{}", r.site + 1));
            let json = reading.to_json();
            let back = iot_protocol::parse_record(json.as_bytes(), "x", 1024).unwrap();
            assert_eq!(back, reading, "{json}");
        }
    }

    #[test]
    fn the_start_must_be_a_midnight_and_there_must_be_a_site() {
        let mut c = config(1, 1, Some(1));
        c.start_ms += HOUR_MS;
        assert!(Generator::new(c).is_err());
        assert!(Generator::new(config(0, 1, Some(1))).is_err());
    }
}
