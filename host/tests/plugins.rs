//! Each plugin through the host's loading path: the built component is compiled, validated
//! and called the way the engine calls it, and its results are compared with expectations
//! computed here from plain numbers. Then the sandbox: hostile components (built from
//! `host/tests/fixtures/`) must be refused or fail with the right error, and the host must
//! keep going.
//!
//! Plugins come from `IOT_PLUGIN_DIR` (default `target/plugins`, filled by
//! `scripts/build-plugins`); when that default folder lacks one, the tests build the plugins
//! themselves with cargo.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::common::{fixture, js_mean, plugin_dir, python_mean, PLUGINS};
use iot_host::plugin::{
    LoadedPlugin, PluginError, PluginHost, PluginInstance, PluginKind, PluginLimits, Sample,
    WasiAccess, Window,
};

const DAY_MS: i64 = 86_400_000;
const STEP_MS: i64 = 900_000;
/// 2020-01-01T00:00:00Z → 2020-01-02T00:00:00Z.
const DAY: Window = Window {
    start_ms: 1_577_836_800_000,
    end_ms: 1_577_836_800_000 + DAY_MS,
};
/// Readings whose floating-point sum depends on the order of the additions (left to right:
/// 359.72; right to left: 359.71999999999997).
const VALUES: [f64; 7] = [13.44, 84.74, 76.38, 25.51, 49.54, 44.95, 65.16];

/// Loads `name` once per test process (compiling is the slow part in a debug build).
fn load_with(
    host: &PluginHost,
    cache: &Mutex<HashMap<String, LoadedPlugin>>,
    path: &Path,
) -> LoadedPlugin {
    let key = path.display().to_string();
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(plugin) = cache.get(&key) {
        return plugin.clone();
    }
    let plugin = host
        .load_file(path)
        .unwrap_or_else(|e| panic!("{e} (build the plugins first: scripts/build-plugins)"));
    cache.insert(key, plugin.clone());
    plugin
}

fn load(name: &str) -> LoadedPlugin {
    static HOST: OnceLock<PluginHost> = OnceLock::new();
    static CACHE: OnceLock<Mutex<HashMap<String, LoadedPlugin>>> = OnceLock::new();
    let host = HOST.get_or_init(|| PluginHost::new(PluginLimits::default()).unwrap());
    let path = plugin_dir().join(format!("{name}.wasm"));
    load_with(host, CACHE.get_or_init(Default::default), &path)
}

/// One input's readings at consecutive 15-minute steps of the day.
fn readings(values: &[f64]) -> Vec<Sample> {
    values
        .iter()
        .enumerate()
        .map(|(k, &value)| Sample::new(0, DAY.start_ms + (k as i64 + 1) * STEP_MS, value))
        .collect()
}

/// init, fold each batch, finish: what the engine does for a day.
fn fold_batches(name: &str, inputs: u32, batches: &[Vec<Sample>]) -> Option<f64> {
    let mut instance = load(name).instantiate().unwrap();
    let mut state = instance.init(&[], inputs, DAY).unwrap();
    for batch in batches {
        instance.fold(&mut state, DAY, batch).unwrap();
    }
    instance.finish(&state, DAY).unwrap()
}

/// Left-to-right sum, the order the plugins must add in.
fn sum_in_order(values: &[f64]) -> f64 {
    values.iter().fold(0.0, |total, v| total + v)
}

// --- every plugin through the harness -----------------------------------------------------

/// Days of readings for [`harness_readings`].
const HARNESS_DAYS: i64 = 3;

/// `inputs` series of 15-minute readings over [`HARNESS_DAYS`] days from `DAY`'s start,
/// values varying (some zero, so night-count has something to skip).
fn harness_readings(inputs: u32) -> Vec<Sample> {
    let steps = HARNESS_DAYS * DAY_MS / STEP_MS;
    (1..=steps)
        .flat_map(|k| {
            let ts = DAY.start_ms + k * STEP_MS;
            (0..inputs).map(move |input| {
                Sample::new(input, ts, ((k * 37 + input as i64) % 11) as f64 * 0.75)
            })
        })
        .collect()
}

#[test]
fn every_plugin_passes_the_harness_batching_check_over_days_of_readings() {
    for name in PLUGINS {
        let inputs = if name == "rest" { 2 } else { 1 };
        let samples = harness_readings(inputs);
        let days = iot_host::plugin_test::fold_days(&load(name), &[], inputs, &samples).unwrap();
        assert!(days.len() as i64 >= HARNESS_DAYS, "{name}: {days:?}");
        for day in &days {
            // An error here is a failed call or the same samples batched otherwise giving
            // other accumulator bytes.
            assert!(
                day.value.is_ok(),
                "{name}, window {:?}: {:?}",
                day.window,
                day.value
            );
        }
        if name == "sum" {
            for day in days {
                let expected: Vec<f64> = samples
                    .iter()
                    .filter(|s| day.window.start_ms < s.ts_ms && s.ts_ms <= day.window.end_ms)
                    .map(|s| s.value)
                    .collect();
                assert_eq!(day.value.unwrap(), Some(sum_in_order(&expected)));
            }
        }
    }
}

#[test]
fn the_harness_reports_a_plugin_whose_result_depends_on_the_batching() {
    let host = PluginHost::new(PluginLimits::default()).unwrap();
    let sensitive = host.load_file(&fixture("misbehaving")).unwrap();
    let params = [("mode".to_owned(), "batch-sensitive".to_owned())];
    let days =
        iot_host::plugin_test::fold_days(&sensitive, &params, 1, &harness_readings(1)).unwrap();
    for day in days {
        let err = day
            .value
            .expect_err("a batch-sensitive plugin must fail the check");
        assert!(
            err.to_string().contains("other accumulator bytes"),
            "{err:#}"
        );
    }
}

// --- sum, mean, count -----------------------------------------------------------------

#[test]
fn sum_adds_every_value_in_the_order_folded() {
    let forward = sum_in_order(&VALUES);
    let mut reversed = VALUES;
    reversed.reverse();
    assert_ne!(
        forward,
        sum_in_order(&reversed),
        "the values must tell the order apart"
    );
    assert_eq!(fold_batches("sum", 1, &[readings(&VALUES)]), Some(forward));
}

#[test]
fn sum_folded_in_two_batches_equals_sum_in_one() {
    let (first, second) = VALUES.split_at(3);
    assert_eq!(
        fold_batches("sum", 1, &[readings(first), readings(second)]),
        Some(sum_in_order(&VALUES))
    );
}

/// The fuel bound is per call, and one `fold` call receives at most
/// `MAX_SAMPLES_PER_FOLD_CALL` samples: a run four times as long folds, to the exact sum,
/// under a bound that one call of all of it would exceed.
#[test]
fn a_fold_longer_than_one_call_takes_is_split_and_stays_within_the_per_call_fuel() {
    let per_call = PluginInstance::MAX_SAMPLES_PER_FOLD_CALL;
    let samples: Vec<Sample> = (0..4 * per_call)
        .map(|k| {
            let ts = DAY.start_ms + (k as i64 % 96 + 1) * STEP_MS;
            Sample::new(0, ts, (k % 97) as f64 * 0.5)
        })
        .collect();
    // What a call burns: fixed cost plus a cost per sample, from two probe calls.
    let mut probe = load("sum").instantiate().unwrap();
    let mut fuel_of = |n: usize| {
        let mut state = probe.init(&[], 1, DAY).unwrap();
        probe.fold(&mut state, DAY, &samples[..n]).unwrap();
        probe
            .last_call_fuel()
            .expect("the default limits meter fuel")
    };
    let (full, half) = (fuel_of(per_call), fuel_of(per_call / 2));
    let per_sample = (full - half) / (per_call - per_call / 2) as u64;
    let fixed = full - per_call as u64 * per_sample;
    let bound = full + full / 2;
    assert!(
        fixed + samples.len() as u64 * per_sample > bound,
        "the run must need more than the bound in one call (fixed {fixed}, per sample {per_sample}, bound {bound})"
    );

    let host = PluginHost::new(PluginLimits {
        fuel_per_call: Some(bound),
        ..PluginLimits::default()
    })
    .unwrap();
    let mut instance = host
        .load_file(&plugin_dir().join("sum.wasm"))
        .unwrap()
        .instantiate()
        .unwrap();
    let mut state = instance.init(&[], 1, DAY).unwrap();
    instance.fold(&mut state, DAY, &samples).unwrap();
    let values: Vec<f64> = samples.iter().map(|s| s.value).collect();
    assert_eq!(
        instance.finish(&state, DAY).unwrap(),
        Some(sum_in_order(&values))
    );
}

#[test]
fn sum_of_no_sample_is_no_value() {
    assert_eq!(fold_batches("sum", 1, &[]), None);
    assert_eq!(fold_batches("sum", 1, &[vec![]]), None);
}

#[test]
fn mean_is_the_sum_in_order_divided_by_the_count() {
    let expected = sum_in_order(&VALUES) / VALUES.len() as f64;
    assert_eq!(
        fold_batches("mean", 1, &[readings(&VALUES)]),
        Some(expected)
    );
}

#[test]
fn mean_of_no_sample_is_no_value() {
    assert_eq!(fold_batches("mean", 1, &[]), None);
}

#[test]
fn count_counts_samples_whatever_their_values() {
    const MOTION_EVENTS: usize = 5;
    let events = readings(&[1.0; MOTION_EVENTS]);
    let other = readings(&VALUES);
    assert_eq!(
        fold_batches("count", 1, &[events, other]),
        Some((MOTION_EVENTS + VALUES.len()) as f64)
    );
}

#[test]
fn count_of_no_sample_is_zero() {
    assert_eq!(fold_batches("count", 1, &[]), Some(0.0));
}

// --- daily-diff -------------------------------------------------------------------------

const START_METER: f64 = 1_000_123.5;
const END_METER: f64 = 1_062_523.25;

fn meter(ts_ms: i64, value: f64) -> Sample {
    Sample::new(0, ts_ms, value)
}

#[test]
fn daily_diff_asks_for_the_reading_at_the_window_start() {
    assert!(load("daily-diff").info().includes_window_start);
    for other in ["sum", "mean", "count", "rest", "max", "night-count"] {
        assert!(!load(other).info().includes_window_start, "{other}");
    }
}

#[test]
fn daily_diff_is_end_reading_minus_start_reading() {
    let batch = vec![
        meter(DAY.end_ms, END_METER),
        meter(DAY.start_ms, START_METER),
    ];
    assert_eq!(
        fold_batches("daily-diff", 1, &[batch]),
        Some(END_METER - START_METER)
    );
}

#[test]
fn daily_diff_ignores_readings_inside_the_window() {
    let batches = [
        vec![meter(DAY.start_ms, START_METER)],
        vec![
            meter(DAY.start_ms + STEP_MS, 5.0),
            meter(DAY.end_ms - 1, 7.0),
        ],
        vec![meter(DAY.end_ms, END_METER)],
    ];
    assert_eq!(
        fold_batches("daily-diff", 1, &batches),
        Some(END_METER - START_METER)
    );
}

#[test]
fn daily_diff_without_both_readings_has_no_value() {
    assert_eq!(
        fold_batches("daily-diff", 1, &[vec![meter(DAY.end_ms, END_METER)]]),
        None
    );
    assert_eq!(
        fold_batches("daily-diff", 1, &[vec![meter(DAY.start_ms, START_METER)]]),
        None
    );
}

#[test]
fn daily_diff_takes_the_last_reading_folded_at_an_instant() {
    const CORRECTED_END: f64 = END_METER + 10.0;
    let batches = [
        vec![
            meter(DAY.start_ms, START_METER),
            meter(DAY.end_ms, END_METER),
        ],
        vec![meter(DAY.end_ms, CORRECTED_END)],
    ];
    assert_eq!(
        fold_batches("daily-diff", 1, &batches),
        Some(CORRECTED_END - START_METER)
    );
}

// --- rest -------------------------------------------------------------------------------

/// AggDayDiff[Etot] and the four AggDay energies, as inputs 0..=4.
const ENERGY: [f64; 5] = [62_400.1, 2_400.2, 4_800.3, 3_600.7, 4_900.9];

fn day_values(values: &[(u32, f64)]) -> Vec<Sample> {
    values
        .iter()
        .map(|&(input, value)| Sample::new(input, DAY.end_ms, value))
        .collect()
}

#[test]
fn rest_is_the_first_input_minus_the_others_in_input_order() {
    let expected = ENERGY[1..].iter().fold(ENERGY[0], |rest, v| rest - v);
    // Folded in another order than the inputs': the subtraction still goes in input order.
    let shuffled: Vec<(u32, f64)> = [3, 0, 4, 1, 2]
        .iter()
        .map(|&i| (i, ENERGY[i as usize]))
        .collect();
    assert_eq!(
        fold_batches("rest", ENERGY.len() as u32, &[day_values(&shuffled)]),
        Some(expected)
    );
}

#[test]
fn rest_of_two_inputs_is_their_difference() {
    const WTOT_DIFF: f64 = 112.5;
    const W1_SUM: f64 = 47.25;
    assert_eq!(
        fold_batches("rest", 2, &[day_values(&[(1, W1_SUM), (0, WTOT_DIFF)])]),
        Some(WTOT_DIFF - W1_SUM)
    );
}

#[test]
fn rest_is_none_until_every_input_has_a_value() {
    let all: Vec<(u32, f64)> = ENERGY
        .iter()
        .enumerate()
        .map(|(i, &v)| (i as u32, v))
        .collect();
    for missing in 0..ENERGY.len() {
        let mut some = all.clone();
        some.remove(missing);
        assert_eq!(
            fold_batches("rest", ENERGY.len() as u32, &[day_values(&some)]),
            None,
            "input {missing} missing"
        );
    }
}

#[test]
fn rest_needs_at_least_two_inputs() {
    let plugin = load("rest");
    assert_eq!(plugin.info().min_inputs, 2);
    let err = plugin.instantiate().unwrap().init(&[], 1, DAY).unwrap_err();
    assert!(matches!(err, PluginError::Returned { .. }), "{err}");
}

#[test]
fn rest_refuses_a_sample_for_an_undeclared_input() {
    let mut instance = load("rest").instantiate().unwrap();
    let mut state = instance.init(&[], 2, DAY).unwrap();
    let err = instance
        .fold(&mut state, DAY, &day_values(&[(2, 1.0)]))
        .unwrap_err();
    assert!(err.to_string().contains("input 2"), "{err}");
}

// --- max --------------------------------------------------------------------------------

#[test]
fn max_is_the_largest_value_of_the_day() {
    let largest = VALUES.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    assert_eq!(largest, 84.74);
    assert_eq!(fold_batches("max", 1, &[readings(&VALUES)]), Some(largest));
}

#[test]
fn max_folded_in_batches_equals_max_in_one() {
    let (first, second) = VALUES.split_at(1); // the largest value comes in the second batch
    assert_eq!(
        fold_batches("max", 1, &[readings(first), vec![], readings(second)]),
        Some(84.74)
    );
}

#[test]
fn max_of_negative_values_is_the_one_closest_to_zero() {
    const COLD: [f64; 4] = [-12.5, -3.25, -7.0, -20.0];
    assert_eq!(fold_batches("max", 1, &[readings(&COLD)]), Some(-3.25));
}

#[test]
fn max_of_no_sample_is_no_value() {
    assert_eq!(fold_batches("max", 1, &[]), None);
    assert_eq!(fold_batches("max", 1, &[vec![]]), None);
}

// --- night-count --------------------------------------------------------------------------

const HOUR_MS: i64 = 3_600_000;
const MINUTE_MS: i64 = 60_000;

/// A motion event (value 1) at `ts_ms`.
fn motion(ts_ms: i64) -> Sample {
    Sample::new(0, ts_ms, 1.0)
}

/// A motion event at `hours:minutes` UTC of the test day.
fn motion_at(hours: i64, minutes: i64) -> Sample {
    motion(DAY.start_ms + hours * HOUR_MS + minutes * MINUTE_MS)
}

fn reading_at(hours: i64, minutes: i64, value: f64) -> Sample {
    let mut reading = motion_at(hours, minutes);
    reading.value = value;
    reading
}

fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|&(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// init with `params`, fold each batch, finish.
fn night_count(params: &[(String, String)], batches: &[Vec<Sample>]) -> Option<f64> {
    let mut instance = load("night-count").instantiate().unwrap();
    let mut state = instance.init(params, 1, DAY).unwrap();
    for batch in batches {
        instance.fold(&mut state, DAY, batch).unwrap();
    }
    instance.finish(&state, DAY).unwrap()
}

#[test]
fn night_count_counts_motion_from_two_to_six_by_default() {
    let inside = [motion_at(2, 30), motion_at(3, 0), motion_at(5, 59)];
    let outside = [
        motion_at(0, 15),
        motion_at(1, 59),
        motion_at(12, 0),
        motion_at(23, 45),
    ];
    let batch: Vec<Sample> = outside.iter().chain(&inside).copied().collect();
    assert_eq!(night_count(&[], &[batch]), Some(inside.len() as f64));
}

#[test]
fn night_count_range_includes_its_start_and_excludes_its_end() {
    let from = DAY.start_ms + 2 * HOUR_MS;
    let to = DAY.start_ms + 6 * HOUR_MS;
    assert_eq!(night_count(&[], &[vec![motion(from)]]), Some(1.0));
    assert_eq!(night_count(&[], &[vec![motion(to - 1)]]), Some(1.0));
    assert_eq!(night_count(&[], &[vec![motion(to)]]), Some(0.0));
    assert_eq!(night_count(&[], &[vec![motion(from - 1)]]), Some(0.0));
}

#[test]
fn night_count_ignores_samples_whose_value_is_zero() {
    let batch = vec![
        motion_at(3, 0),
        reading_at(3, 15, 0.0),
        reading_at(4, 0, -0.0),
        reading_at(4, 30, 2.0),
    ];
    assert_eq!(night_count(&[], &[batch]), Some(2.0));
}

#[test]
fn night_count_uses_the_time_of_day_of_the_timestamp_in_utc() {
    // The window does not matter, only ts_ms modulo one day: 03:00 of the next day and of
    // a day before 1970 are inside the range too.
    let next_day = motion(DAY.end_ms + 3 * HOUR_MS);
    let before_1970 = motion(-10 * DAY_MS + 3 * HOUR_MS);
    let before_1970_at_noon = motion(-10 * DAY_MS + 12 * HOUR_MS);
    assert_eq!(
        night_count(&[], &[vec![next_day, before_1970, before_1970_at_noon]]),
        Some(2.0)
    );
}

#[test]
fn night_count_with_samples_but_none_in_the_range_is_zero() {
    let batch = vec![motion_at(8, 0), motion_at(13, 45), motion_at(22, 10)];
    assert_eq!(night_count(&[], &[batch]), Some(0.0));
}

#[test]
fn night_count_of_no_sample_is_no_value() {
    assert_eq!(night_count(&[], &[]), None);
    assert_eq!(night_count(&[], &[vec![]]), None);
}

#[test]
fn night_count_folded_in_batches_equals_night_count_in_one() {
    let batches = [
        vec![motion_at(2, 0), motion_at(7, 0)],
        vec![],
        vec![motion_at(5, 0), motion_at(6, 0), motion_at(3, 30)],
    ];
    assert_eq!(night_count(&[], &batches), Some(3.0));
}

#[test]
fn night_count_takes_its_range_from_the_params() {
    let evening = params(&[("from", "18:30"), ("to", "21:00")]);
    let batch = vec![
        motion_at(18, 29),
        motion_at(18, 30),
        motion_at(20, 59),
        motion_at(21, 0),
        motion_at(3, 0),
    ];
    assert_eq!(night_count(&evening, &[batch]), Some(2.0));

    // Only one of them given: the other keeps its default (to = 06:00).
    let from_midnight = params(&[("from", "00:00")]);
    let batch = vec![
        motion_at(0, 0),
        motion_at(1, 0),
        motion_at(5, 59),
        motion_at(6, 0),
    ];
    assert_eq!(night_count(&from_midnight, &[batch]), Some(3.0));
}

#[test]
fn night_count_range_from_late_evening_to_morning_wraps_past_midnight() {
    let night = params(&[("to", "06:00"), ("from", "22:00")]);
    let batch = vec![
        motion_at(21, 59),
        motion_at(22, 0),
        motion_at(23, 45),
        motion_at(0, 0),
        motion_at(5, 59),
        motion_at(6, 0),
        motion_at(12, 0),
    ];
    assert_eq!(night_count(&night, &[batch]), Some(4.0));
}

#[test]
fn night_count_refuses_invalid_params_with_a_clear_error() {
    let cases: [(&[(&str, &str)], &str); 7] = [
        (&[("from", "2:00")], "\"2:00\""),
        (&[("from", "24:00")], "\"24:00\""),
        (&[("to", "06:60")], "\"06:60\""),
        (&[("to", "six")], "\"six\""),
        (&[("from", "02:00:00")], "\"02:00:00\""),
        (&[("from", "04:00"), ("to", "04:00")], "same time"),
        (&[("form", "02:00")], "unknown parameter \"form\""),
    ];
    let mut instance = load("night-count").instantiate().unwrap();
    for (bad, expected) in cases {
        let err = instance.init(&params(bad), 1, DAY).unwrap_err();
        assert!(
            matches!(err, PluginError::Returned { .. }),
            "{bad:?}: {err}"
        );
        let text = err.to_string();
        assert!(
            text.contains("night-count") && text.contains(expected),
            "{bad:?}: {text}"
        );
    }
}

// --- every plugin -------------------------------------------------------------------------

#[test]
fn state_snapshot_resumes_in_a_fresh_instance() {
    let plugin = load("mean");
    let (first, second) = VALUES.split_at(4);
    let snapshot = {
        let mut instance = plugin.instantiate().unwrap();
        let mut state = instance.init(&[], 1, DAY).unwrap();
        instance.fold(&mut state, DAY, &readings(first)).unwrap();
        state
    };
    let mut fresh = plugin.instantiate().unwrap();
    let mut state = snapshot;
    fresh.fold(&mut state, DAY, &readings(second)).unwrap();
    assert_eq!(
        fresh.finish(&state, DAY).unwrap(),
        Some(sum_in_order(&VALUES) / VALUES.len() as f64)
    );
}

#[test]
fn every_plugin_describes_itself() {
    for name in PLUGINS {
        let info = load(name).info().clone();
        assert_eq!(info.name, name);
        // daily-diff's accumulator changed layout when it moved to the SDK.
        let state_version = if name == "daily-diff" { 2 } else { 1 };
        assert_eq!(info.state_version, state_version, "{name}");
        let expected_inputs = if name == "rest" { (2, 64) } else { (1, 1) };
        assert_eq!(
            (info.min_inputs, info.max_inputs),
            expected_inputs,
            "{name}"
        );
    }
}

#[test]
fn every_plugin_imports_only_what_rusts_std_adds_for_stdio() {
    let engine = wasmtime::Engine::default();
    for name in PLUGINS {
        load(name); // builds the plugins if needed
        let path = plugin_dir().join(format!("{name}.wasm"));
        let component = wasmtime::component::Component::from_file(&engine, &path).unwrap();
        let imports: Vec<String> = component
            .component_type()
            .imports(&engine)
            .map(|(import, _)| import.to_owned())
            .collect();
        // The plugins are std crates: wasm32-wasip2's std imports stdio, environment and exit
        // (linked as stubs that grant nothing), never a capability.
        let capabilities: Vec<&String> = imports
            .iter()
            .filter(|i| !(i.starts_with("wasi:cli/") || i.starts_with("wasi:io/")))
            .collect();
        assert!(capabilities.is_empty(), "{name} imports {capabilities:?}");
    }
}

#[test]
fn a_corrupt_accumulator_is_an_error_not_a_crash() {
    for name in PLUGINS {
        let mut instance = load(name).instantiate().unwrap();
        let mut state = vec![1, 2, 3];
        let err = instance
            .fold(&mut state, DAY, &readings(&VALUES))
            .unwrap_err();
        assert!(matches!(err, PluginError::Returned { .. }), "{name}: {err}");
        assert_eq!(
            state,
            [1, 2, 3],
            "{name}: a failed fold leaves the accumulator as it was"
        );
        // The instance is still usable afterwards.
        let inputs = load(name).info().min_inputs;
        let state = instance.init(&[], inputs, DAY).unwrap();
        instance.finish(&state, DAY).unwrap();
    }
}

#[test]
fn a_file_that_is_not_a_component_is_refused_with_a_clear_error() {
    let host = PluginHost::new(PluginLimits::default()).unwrap();
    let err = host.load_bytes("garbage", b"\0asm-not-really").unwrap_err();
    assert!(matches!(err, PluginError::NotAComponent { .. }), "{err}");
    assert!(err.to_string().contains("scripts/build-plugins"), "{err}");
}

#[test]
fn a_missing_file_is_a_read_error_naming_it() {
    let host = PluginHost::new(PluginLimits::default()).unwrap();
    let err = host
        .load_file(Path::new("/nonexistent/sum.wasm"))
        .unwrap_err();
    assert!(matches!(err, PluginError::Read { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/sum.wasm"), "{err}");
}

// --- the sandbox, with hostile plugins --------------------------------------------------

/// Limits small enough that the hostile tests are quick, large enough that a plugin may
/// fill a 16 MiB accumulator or a 4 MiB message (so the size bounds are what stops them).
const TEST_LIMITS: PluginLimits = PluginLimits {
    fuel_per_call: Some(20_000_000),
    max_memory_bytes: 24 << 20,
    max_state_bytes: 64 << 10,
    wall_clock_per_call: None,
    wasi: WasiAccess::DenyAll,
};

fn hostile() -> LoadedPlugin {
    static HOST: OnceLock<PluginHost> = OnceLock::new();
    static CACHE: OnceLock<Mutex<HashMap<String, LoadedPlugin>>> = OnceLock::new();
    let host = HOST.get_or_init(|| PluginHost::new(TEST_LIMITS).unwrap());
    load_with(
        host,
        CACHE.get_or_init(Default::default),
        &fixture("misbehaving"),
    )
}

fn mode(mode: &str) -> Vec<(String, String)> {
    vec![("mode".to_owned(), mode.to_owned())]
}

/// After a failed call, the same instance works again (re-created behind the scenes).
fn assert_recovers(instance: &mut iot_host::plugin::PluginInstance) {
    let mut state = instance.init(&mode("sum"), 1, DAY).unwrap();
    instance.fold(&mut state, DAY, &readings(&VALUES)).unwrap();
    assert_eq!(
        instance.finish(&state, DAY).unwrap(),
        Some(sum_in_order(&VALUES))
    );
}

#[test]
fn a_plugin_that_reads_the_clock_is_refused_at_load_naming_the_import() {
    let host = PluginHost::new(TEST_LIMITS).unwrap();
    let err = host.load_file(&fixture("clock-reader")).unwrap_err();
    let PluginError::ForbiddenImport { import, .. } = &err else {
        panic!("expected a forbidden import, got: {err}");
    };
    assert!(import.starts_with("wasi:clocks/"), "{err}");
    assert!(err.to_string().contains("no clocks"), "{err}");
}

/// 2000-01-01T00:00:00Z in ms: what the deterministic wall clock reads.
const Y2K_MS: u128 = 946_684_800_000;

#[test]
fn a_plugin_that_reads_the_clock_sees_a_fixed_time_under_deterministic_wasi() {
    let host = PluginHost::new(PluginLimits {
        wasi: WasiAccess::Deterministic,
        ..TEST_LIMITS
    })
    .unwrap();
    let plugin = host.load_file(&fixture("clock-reader")).unwrap();
    let imports: Vec<(&str, &str)> = plugin.imports().collect();
    assert!(
        imports
            .iter()
            .any(|(i, given)| i.starts_with("wasi:clocks/wall-clock@")
                && given.contains("2000-01-01")),
        "{imports:?}"
    );
    let mut instance = plugin.instantiate().unwrap();
    // The fixture's accumulator is the wall clock's reading in ms: the same in every call.
    for _ in 0..2 {
        let mut state = instance.init(&[], 1, DAY).unwrap();
        instance.fold(&mut state, DAY, &readings(&VALUES)).unwrap();
        assert_eq!(state, Y2K_MS.to_le_bytes().to_vec());
    }
}

/// A `mean` written in another language: refused under the default WASI (its runtime imports
/// clocks, randomness, files); under the deterministic one it gives the Rust `mean`'s
/// values bit for bit through the harness, and its accumulator is the Rust one's.
fn assert_the_same_as_the_rust_mean(component: &Path) {
    let denied = PluginHost::new(PluginLimits::default()).unwrap();
    let err = denied.load_file(component).unwrap_err();
    assert!(matches!(err, PluginError::ForbiddenImport { .. }), "{err}");
    assert!(err.to_string().contains("deterministic"), "{err}");

    let host = PluginHost::new(PluginLimits {
        wasi: WasiAccess::Deterministic,
        ..PluginLimits::default()
    })
    .unwrap();
    let other = host.load_file(component).unwrap();
    let rust = load("mean");
    assert_eq!(other.info(), rust.info());
    // Day windows through the harness (its batching check included): bit for bit the same.
    let samples = harness_readings(1);
    let other_days = iot_host::plugin_test::fold_days(&other, &[], 1, &samples).unwrap();
    let rust_days = iot_host::plugin_test::fold_days(&rust, &[], 1, &samples).unwrap();
    assert_eq!(other_days.len(), rust_days.len());
    for (o, r) in other_days.into_iter().zip(rust_days) {
        let bits = |v: anyhow::Result<Option<f64>>| v.unwrap().map(f64::to_bits);
        assert_eq!(bits(o.value), bits(r.value), "window {:?}", o.window);
    }
    // The same accumulator layout: folded by the other build, finished by the Rust one.
    let mut folder = other.instantiate().unwrap();
    let mut state = folder.init(&[], 1, DAY).unwrap();
    folder.fold(&mut state, DAY, &readings(&VALUES)).unwrap();
    let mut finisher = rust.instantiate().unwrap();
    assert_eq!(
        finisher.finish(&state, DAY).unwrap(),
        Some(sum_in_order(&VALUES) / VALUES.len() as f64)
    );
}

#[test]
fn the_python_mean_is_refused_by_default_and_under_deterministic_wasi_equals_the_rust_mean() {
    assert_the_same_as_the_rust_mean(python_mean());
}

#[test]
fn the_javascript_mean_is_refused_by_default_and_under_deterministic_wasi_equals_the_rust_mean() {
    assert_the_same_as_the_rust_mean(js_mean());
}

#[test]
fn a_plugin_built_with_std_loads_with_its_stdio_imports_stubbed() {
    let mut instance = hostile().instantiate().unwrap();
    assert_recovers(&mut instance);
}

#[test]
fn a_looping_plugin_runs_out_of_fuel_and_the_next_call_works() {
    let mut instance = hostile().instantiate().unwrap();
    let mut state = instance.init(&mode("loop"), 1, DAY).unwrap();
    let err = instance
        .fold(&mut state, DAY, &readings(&VALUES))
        .unwrap_err();
    assert!(matches!(err, PluginError::OutOfFuel { .. }), "{err}");
    assert!(err.to_string().contains("fuel"), "{err}");
    assert_recovers(&mut instance);
}

/// A wall-clock bound instead of fuel (epoch interruption): what stops the loop is time.
const DEADLINE_LIMITS: PluginLimits = PluginLimits {
    fuel_per_call: None,
    wall_clock_per_call: Some(Duration::from_millis(50)),
    ..TEST_LIMITS
};

#[test]
fn a_looping_plugin_under_a_wall_clock_bound_is_stopped_by_it_and_the_next_call_works() {
    let host = PluginHost::new(DEADLINE_LIMITS).unwrap();
    let mut instance = host
        .load_file(&fixture("misbehaving"))
        .unwrap()
        .instantiate()
        .unwrap();
    let mut state = instance.init(&mode("loop"), 1, DAY).unwrap();
    let err = instance
        .fold(&mut state, DAY, &readings(&VALUES))
        .unwrap_err();
    assert!(matches!(err, PluginError::TooSlow { .. }), "{err}");
    assert!(err.to_string().contains("50ms"), "{err}");
    assert_recovers(&mut instance);
}

#[test]
fn a_plugin_that_exhausts_memory_fails_with_out_of_memory_and_the_next_call_works() {
    let mut instance = hostile().instantiate().unwrap();
    let mut state = instance.init(&mode("grow"), 1, DAY).unwrap();
    let err = instance
        .fold(&mut state, DAY, &readings(&VALUES))
        .unwrap_err();
    assert!(matches!(err, PluginError::OutOfMemory { .. }), "{err}");
    assert!(
        err.to_string()
            .contains(&TEST_LIMITS.max_memory_bytes.to_string()),
        "{err}"
    );
    assert_recovers(&mut instance);
}

/// Samples are lowered into the plugin's memory one call at a time, and a call takes at
/// most `MAX_SAMPLES_PER_FOLD_CALL`: a run of samples larger than the whole memory cap
/// still folds, exactly.
#[test]
fn a_batch_larger_than_the_memory_cap_folds_in_calls_that_fit_it() {
    let too_many = TEST_LIMITS.max_memory_bytes / 24 + 1; // a sample is 24 bytes in wasm
    let samples = vec![readings(&[1.0])[0]; too_many];
    let mut instance = load_with(
        &PluginHost::new(TEST_LIMITS).unwrap(),
        &Mutex::default(),
        &plugin_dir().join("sum.wasm"),
    )
    .instantiate()
    .unwrap();
    let mut state = instance.init(&[], 1, DAY).unwrap();
    instance.fold(&mut state, DAY, &samples).unwrap();
    assert_eq!(instance.finish(&state, DAY).unwrap(), Some(too_many as f64));
}

#[test]
fn a_panicking_plugin_reports_its_message_and_the_next_call_works() {
    let mut instance = hostile().instantiate().unwrap();
    let mut state = instance.init(&mode("panic"), 1, DAY).unwrap();
    let err = instance
        .fold(&mut state, DAY, &readings(&VALUES))
        .unwrap_err();
    assert!(matches!(err, PluginError::Trap { .. }), "{err}");
    // The message std printed on stderr, captured by the sandbox, with where it panicked.
    let text = err.to_string();
    assert!(text.contains("asked to panic"), "{text}");
    assert!(
        text.contains("panicked at") && text.contains("lib.rs"),
        "{text}"
    );
    assert_recovers(&mut instance);
}

#[test]
fn a_non_finite_result_is_an_error() {
    let mut instance = hostile().instantiate().unwrap();
    let state = instance.init(&mode("nan"), 1, DAY).unwrap();
    let err = instance.finish(&state, DAY).unwrap_err();
    assert!(matches!(err, PluginError::NonFinite { .. }), "{err}");
    assert_recovers(&mut instance);
}

#[test]
fn an_error_the_plugin_returns_names_the_plugin_and_the_call() {
    let mut instance = hostile().instantiate().unwrap();
    let mut state = instance.init(&mode("error"), 1, DAY).unwrap();
    let err = instance
        .fold(&mut state, DAY, &readings(&VALUES))
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("misbehaving") && text.contains("fold") && text.contains("asked to fail"),
        "{text}"
    );
    assert_recovers(&mut instance);
}

#[test]
fn a_huge_accumulator_from_init_is_refused_before_the_host_keeps_it() {
    let mut instance = hostile().instantiate().unwrap();
    let err = instance.init(&mode("huge-init"), 1, DAY).unwrap_err();
    let PluginError::StateTooLarge {
        call, bytes, limit, ..
    } = &err
    else {
        panic!("expected an accumulator over the bound, got: {err}");
    };
    assert_eq!(
        (*call, *bytes, *limit),
        ("init", 16 << 20, TEST_LIMITS.max_state_bytes)
    );
    assert!(err.to_string().contains("max_state_bytes"), "{err}");
    assert_recovers(&mut instance);
}

#[test]
fn an_accumulator_that_grows_on_every_fold_fails_once_over_the_bound_and_keeps_its_last_good_state()
{
    let mut instance = hostile().instantiate().unwrap();
    let mut state = instance.init(&mode("grow-state"), 1, DAY).unwrap();
    let mut folds = 0;
    let err = loop {
        let before = state.clone();
        match instance.fold(&mut state, DAY, &readings(&[1.0])) {
            Ok(()) => folds += 1,
            Err(err) => {
                assert_eq!(
                    state, before,
                    "a failed fold leaves the accumulator as it was"
                );
                break err;
            }
        }
        assert!(folds < 100, "the accumulator never went over the bound");
    };
    assert!(
        matches!(err, PluginError::StateTooLarge { call: "fold", .. }),
        "{err}"
    );
    assert!(state.len() <= TEST_LIMITS.max_state_bytes);
    assert_eq!(
        folds,
        (TEST_LIMITS.max_state_bytes - 17) / (16 << 10),
        "folds that fit"
    );
    assert_recovers(&mut instance);
}

#[test]
fn a_huge_error_message_is_cut_to_a_bounded_length() {
    let mut instance = hostile().instantiate().unwrap();
    let mut state = instance.init(&mode("huge-error"), 1, DAY).unwrap();
    let err = instance
        .fold(&mut state, DAY, &readings(&VALUES))
        .unwrap_err();
    let PluginError::Returned { message, .. } = &err else {
        panic!("expected a returned error, got: {err}");
    };
    assert!(
        message.len() <= PluginLimits::MAX_MESSAGE_BYTES + 64,
        "{} bytes",
        message.len()
    );
    assert!(
        message.ends_with(&format!(
            "({} bytes, cut to {})",
            4 << 20,
            PluginLimits::MAX_MESSAGE_BYTES
        )),
        "{}",
        &message[message.len() - 60..]
    );
    assert_recovers(&mut instance);
}

#[test]
fn endless_recursion_traps_on_the_stack_bound_and_the_next_call_works() {
    let mut instance = hostile().instantiate().unwrap();
    let mut state = instance.init(&mode("recurse"), 1, DAY).unwrap();
    let err = instance
        .fold(&mut state, DAY, &readings(&VALUES))
        .unwrap_err();
    assert!(
        matches!(
            err,
            PluginError::Trap { .. } | PluginError::OutOfFuel { .. }
        ),
        "{err}"
    );
    assert_recovers(&mut instance);
}

#[test]
fn a_slow_plugin_under_the_fuel_bound_completes_every_call() {
    let mut instance = hostile().instantiate().unwrap();
    let params = vec![
        ("mode".to_owned(), "slow".to_owned()),
        ("spin".to_owned(), "100000".to_owned()),
    ];
    let mut state = instance.init(&params, 1, DAY).unwrap();
    instance.fold(&mut state, DAY, &readings(&VALUES)).unwrap();
    assert_eq!(
        instance.finish(&state, DAY).unwrap(),
        Some(sum_in_order(&VALUES))
    );
}

// --- WIT version and state compatibility, with fixture builds -----------------------------

#[test]
fn a_plugin_built_against_another_wit_version_is_refused_at_load_naming_the_interface() {
    let host = PluginHost::new(TEST_LIMITS).unwrap();
    let err = host.load_file(&fixture("wrong-wit-version")).unwrap_err();
    assert!(
        matches!(err, PluginError::WrongInterface { .. }),
        "expected a wrong interface, got: {err}"
    );
    assert!(
        err.to_string().contains("iot:aggregation/fold@1.0.0"),
        "{err}"
    );
}

fn fixture_plugin(name: &str) -> LoadedPlugin {
    static HOST: OnceLock<PluginHost> = OnceLock::new();
    static CACHE: OnceLock<Mutex<HashMap<String, LoadedPlugin>>> = OnceLock::new();
    let host = HOST.get_or_init(|| PluginHost::new(PluginLimits::default()).unwrap());
    load_with(host, CACHE.get_or_init(Default::default), &fixture(name))
}

#[test]
fn sum_marked_v1_finishes_an_accumulator_of_the_real_sum_to_the_sum_plus_a_million() {
    const MARK_V1: f64 = 1_000_000.0;
    let day = readings(&VALUES);
    let (before_swap, after_swap) = day.split_at(3);
    let mut sum = load("sum").instantiate().unwrap();
    let mut state = sum.init(&[], 1, DAY).unwrap();
    sum.fold(&mut state, DAY, before_swap).unwrap();

    let marked = fixture_plugin("sum-marked-v1");
    assert_eq!(marked.info().name, "sum-marked-v1");
    assert_eq!(marked.info().state_version, 1);
    assert_eq!(load("sum").info().state_version, 1);
    let mut marked = marked.instantiate().unwrap();
    marked.fold(&mut state, DAY, after_swap).unwrap();
    assert_eq!(
        marked.finish(&state, DAY).unwrap(),
        Some(sum_in_order(&VALUES) + MARK_V1)
    );

    // Byte for byte the same accumulator: either build can carry on from the other.
    let mut by_sum = sum.init(&[], 1, DAY).unwrap();
    sum.fold(&mut by_sum, DAY, &day).unwrap();
    let mut by_marked = marked.init(&[], 1, DAY).unwrap();
    marked.fold(&mut by_marked, DAY, &day).unwrap();
    assert_eq!(by_marked, by_sum);
    assert_eq!(by_sum.len(), 16);
    let empty = marked.init(&[], 1, DAY).unwrap();
    assert_eq!(marked.finish(&empty, DAY).unwrap(), None);
}

#[test]
fn sum_marked_v2_declares_state_version_2_and_sums_in_order_plus_two_million() {
    const MARK_V2: f64 = 2_000_000.0;
    let plugin = fixture_plugin("sum-marked-v2");
    assert_eq!(plugin.info().name, "sum-marked-v2");
    assert_eq!(plugin.info().state_version, 2);
    assert_ne!(
        plugin.info().state_version,
        load("sum").info().state_version
    );
    let mut instance = plugin.instantiate().unwrap();
    let (first, second) = VALUES.split_at(4);
    let mut state = instance.init(&[], 1, DAY).unwrap();
    instance.fold(&mut state, DAY, &readings(first)).unwrap();
    instance.fold(&mut state, DAY, &readings(second)).unwrap();
    assert_eq!(
        instance.finish(&state, DAY).unwrap(),
        Some(sum_in_order(&VALUES) + MARK_V2)
    );
    let empty = instance.init(&[], 1, DAY).unwrap();
    assert_eq!(instance.finish(&empty, DAY).unwrap(), None);
}

#[test]
fn sum_marked_v2_refuses_an_accumulator_of_the_real_sum() {
    let mut sum = load("sum").instantiate().unwrap();
    let mut state = sum.init(&[], 1, DAY).unwrap();
    sum.fold(&mut state, DAY, &readings(&VALUES)).unwrap();
    let mut v2 = fixture_plugin("sum-marked-v2").instantiate().unwrap();
    let err = v2.finish(&state, DAY).unwrap_err();
    assert!(matches!(err, PluginError::Returned { .. }), "{err}");
}

#[test]
fn samples_reach_the_plugin_bit_for_bit() {
    // Every field of every sample matters here: 64 inputs, extreme values, and a window
    // before 1970 (negative timestamps).
    const INPUTS: u32 = 64;
    let values: Vec<f64> = (0..INPUTS)
        .map(|i| match i % 4 {
            0 => 1e300 / f64::from(i + 1),
            1 => -f64::MIN_POSITIVE * f64::from(i),
            2 => -0.0,
            _ => f64::from(i) * 0.1,
        })
        .collect();
    let expected = values[1..].iter().fold(values[0], |rest, v| rest - v);
    let mut batch: Vec<Sample> = values
        .iter()
        .enumerate()
        .map(|(i, &value)| Sample::new(i as u32, DAY.end_ms, value))
        .collect();
    batch.reverse();
    let got = fold_batches("rest", INPUTS, &[batch]).unwrap();
    assert_eq!(got.to_bits(), expected.to_bits());

    const BEFORE_1970: Window = Window {
        start_ms: -3 * DAY_MS,
        end_ms: -2 * DAY_MS,
    };
    let mut instance = load("daily-diff").instantiate().unwrap();
    let mut state = instance.init(&[], 1, BEFORE_1970).unwrap();
    let readings = [
        meter(BEFORE_1970.start_ms, 10.5),
        meter(BEFORE_1970.end_ms, 30.25),
    ];
    instance.fold(&mut state, BEFORE_1970, &readings).unwrap();
    assert_eq!(
        instance.finish(&state, BEFORE_1970).unwrap(),
        Some(30.25 - 10.5)
    );
}

// --- alarm rules ------------------------------------------------------------------------

/// The alarms a rule raised over the harness's days, as (instant, value), in order.
fn alarms_over_days(rule: &str, pairs: &[(&str, &str)], inputs: u32) -> Vec<(i64, f64)> {
    let plugin = load(rule);
    assert_eq!(plugin.kind(), PluginKind::AlarmRule, "{rule}");
    let days = iot_host::plugin_test::fold_days(
        &plugin,
        &params(pairs),
        inputs,
        &harness_readings(inputs),
    )
    .unwrap();
    assert!(days.len() as i64 >= HARNESS_DAYS);
    days.into_iter()
        .flat_map(|day| {
            // An error is a failed call, or other bytes or alarms when batched otherwise.
            assert_eq!(day.value.unwrap(), None, "a rule has no value per window");
            day.alarms.into_iter().map(|a| (a.ts_ms, a.value))
        })
        .collect()
}

/// The harness's readings of one input, by day window, in order.
fn by_window(samples: &[Sample], input: u32) -> Vec<Vec<Sample>> {
    let mut days: std::collections::BTreeMap<i64, Vec<Sample>> = Default::default();
    for s in samples.iter().filter(|s| s.input == input) {
        let end = (s.ts_ms - 1).div_euclid(DAY_MS) * DAY_MS + DAY_MS;
        days.entry(end).or_default().push(*s);
    }
    days.into_values().collect()
}

#[test]
fn motion_at_night_raises_an_alarm_for_each_motion_in_the_local_night() {
    let got = alarms_over_days(
        "motion-at-night",
        &[("from", "01:00"), ("to", "03:30"), ("utc_offset", "-01:00")],
        1,
    );
    // Local 01:00–03:30 at UTC−1 is 02:00–04:30 UTC.
    let expected: Vec<(i64, f64)> = harness_readings(1)
        .iter()
        .filter(|s| s.value != 0.0)
        .filter(|s| (2 * HOUR_MS..4 * HOUR_MS + 30 * 60_000).contains(&s.ts_ms.rem_euclid(DAY_MS)))
        .map(|s| (s.ts_ms, 1.0))
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(got, expected);
}

#[test]
fn motion_low_energy_raises_while_the_days_energy_so_far_is_under_the_threshold() {
    let got = alarms_over_days("motion-low-energy", &[("threshold", "30")], 2);
    let mut expected = Vec::new();
    let samples = harness_readings(2);
    let mut energy_by_day: std::collections::BTreeMap<i64, f64> = Default::default();
    for s in &samples {
        let end = (s.ts_ms - 1).div_euclid(DAY_MS) * DAY_MS + DAY_MS;
        let energy = energy_by_day.entry(end).or_default();
        if s.input == 1 {
            *energy += s.value;
        } else if s.value != 0.0 && *energy < 30.0 {
            expected.push((s.ts_ms, *energy));
        }
    }
    assert!(!expected.is_empty());
    assert_eq!(got, expected);
}

#[test]
fn out_of_band_raises_once_per_run_of_consecutive_readings_outside_the_band() {
    let got = alarms_over_days(
        "out-of-band",
        &[("low", "2"), ("high", "5"), ("readings", "2")],
        1,
    );
    let mut expected = Vec::new();
    for day in by_window(&harness_readings(1), 0) {
        let mut run = 0;
        for s in day {
            if (2.0..=5.0).contains(&s.value) {
                run = 0;
            } else {
                run += 1;
                if run == 2 {
                    expected.push((s.ts_ms, s.value));
                }
            }
        }
    }
    assert!(!expected.is_empty());
    assert_eq!(got, expected);
}

#[test]
fn an_output_of_kind_alarm_needs_a_rule_and_other_kinds_need_an_aggregation() {
    let pipeline = |kind: &str, plugin: &str| {
        iot_host::pipeline::Pipeline::parse(&format!(
            "[[output]]\nname = \"X\"\nkind = \"{kind}\"\nplugin = \"{plugin}\"\ninputs = [\"TH1\"]\nunit = \"u\"\n[output.params]\nlow = \"1\"\nhigh = \"2\"\n"
        ))
        .unwrap()
    };
    let build = |kind: &str, plugin: &str| iot_host::tenant::TenantBuild {
        pipeline: std::sync::Arc::new(pipeline(kind, plugin)),
        plugins: [(plugin.to_owned(), load(plugin))].into_iter().collect(),
    };
    assert!(build("Alarm", "out-of-band").check().is_ok());
    let err = build("AggDay", "out-of-band")
        .check()
        .unwrap_err()
        .to_string();
    assert!(err.contains("iot:aggregation/fold@1.0.0"), "{err}");
    let err = build("Alarm", "max").check().unwrap_err().to_string();
    assert!(err.contains("iot:aggregation/alarm-rule@1.0.0"), "{err}");
}
