//! Each plugin through the host's loading path: the built `.wasm` (scripts/build-plugins)
//! is compiled, validated and called like the engine calls it. Expectations are computed
//! here from plain numbers.

use std::path::PathBuf;

use iot_host::plugin::{LoadedPlugin, PluginError, PluginHost, PluginLimits, Sample, Window};

const DAY_MS: i64 = 86_400_000;
const STEP_MS: i64 = 900_000;
/// 2020-01-01T00:00:00Z → 2020-01-02T00:00:00Z.
const DAY: Window = Window {
    start_ms: 1_577_836_800_000,
    end_ms: 1_577_836_800_000 + DAY_MS,
};
const VALUES: [f64; 6] = [12.5, 0.25, 99.75, 3.0, 41.125, 7.5];

fn plugin_dir() -> PathBuf {
    std::env::var_os("IOT_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/plugins"))
}

fn load(name: &str) -> LoadedPlugin {
    let path = plugin_dir().join(format!("{name}.wasm"));
    PluginHost::new(PluginLimits::default())
        .unwrap()
        .load_file(&path)
        .unwrap_or_else(|e| panic!("{e} (build the plugins first: scripts/build-plugins)"))
}

fn samples(values: &[f64]) -> Vec<Sample> {
    values
        .iter()
        .enumerate()
        .map(|(k, &value)| Sample {
            input: 0,
            ts_ms: DAY.start_ms + (k as i64 + 1) * STEP_MS,
            value,
        })
        .collect()
}

fn fold_all(name: &str, inputs: u32, batches: &[Vec<Sample>]) -> Option<f64> {
    let mut instance = load(name).instantiate().unwrap();
    let mut state = instance.init(&[], inputs, DAY).unwrap();
    for batch in batches {
        instance.fold(&mut state, DAY, batch).unwrap();
    }
    instance.finish(&state, DAY).unwrap()
}

fn plain_sum(values: &[f64]) -> f64 {
    let mut total = 0.0;
    for v in values {
        total += v;
    }
    total
}

#[test]
fn sum_adds_every_value_in_arrival_order() {
    assert_eq!(
        fold_all("sum", 1, &[samples(&VALUES)]),
        Some(plain_sum(&VALUES))
    );
}

#[test]
fn sum_folded_in_two_batches_equals_sum_in_one() {
    let (a, b) = VALUES.split_at(2);
    let batches = [samples(a), samples(b)];
    assert_eq!(
        fold_all("sum", 1, &batches),
        fold_all("sum", 1, &[samples(&VALUES)])
    );
}

#[test]
fn sum_of_no_sample_is_no_value() {
    assert_eq!(fold_all("sum", 1, &[]), None);
}

#[test]
fn mean_is_the_sum_divided_by_the_count() {
    assert_eq!(
        fold_all("mean", 1, &[samples(&VALUES)]),
        Some(plain_sum(&VALUES) / VALUES.len() as f64)
    );
}

#[test]
fn count_counts_samples_whatever_their_values() {
    assert_eq!(
        fold_all("count", 1, &[samples(&VALUES), samples(&[1.0])]),
        Some((VALUES.len() + 1) as f64)
    );
}

#[test]
fn daily_diff_is_end_reading_minus_start_reading() {
    const START_METER: f64 = 1_000_123.5;
    const END_METER: f64 = 1_062_523.25;
    let plugin = load("daily-diff");
    assert!(
        plugin.info().includes_window_start,
        "daily-diff asks for the reading at the window start"
    );
    let readings = vec![
        Sample {
            input: 0,
            ts_ms: DAY.end_ms,
            value: END_METER,
        },
        Sample {
            input: 0,
            ts_ms: DAY.start_ms,
            value: START_METER,
        },
    ];
    assert_eq!(
        fold_all("daily-diff", 1, &[readings]),
        Some(END_METER - START_METER)
    );
}

#[test]
fn daily_diff_without_the_start_reading_has_no_value() {
    let readings = vec![Sample {
        input: 0,
        ts_ms: DAY.end_ms,
        value: 5.0,
    }];
    assert_eq!(fold_all("daily-diff", 1, &[readings]), None);
}

#[test]
fn rest_is_the_first_input_minus_the_others_in_order() {
    let inputs = [62_000.5, 2_400.25, 4_800.0, 3_600.75, 4_900.5];
    let batch: Vec<Sample> = inputs
        .iter()
        .enumerate()
        .map(|(i, &value)| Sample {
            input: i as u32,
            ts_ms: DAY.end_ms,
            value,
        })
        .collect();
    let expected = inputs[1..].iter().fold(inputs[0], |acc, v| acc - v);
    assert_eq!(
        fold_all("rest", inputs.len() as u32, &[batch]),
        Some(expected)
    );
}

#[test]
fn rest_is_none_until_every_input_has_a_value() {
    let batch = vec![
        Sample {
            input: 0,
            ts_ms: DAY.end_ms,
            value: 100.0,
        },
        Sample {
            input: 1,
            ts_ms: DAY.end_ms,
            value: 40.0,
        },
    ];
    assert_eq!(fold_all("rest", 3, &[batch]), None);
}

#[test]
fn state_snapshot_resumes_in_a_fresh_instance() {
    let plugin = load("mean");
    let (a, b) = VALUES.split_at(3);
    let mut first = plugin.instantiate().unwrap();
    let mut state = first.init(&[], 1, DAY).unwrap();
    first.fold(&mut state, DAY, &samples(a)).unwrap();
    let snapshot = state.clone();
    drop(first);
    let mut second = plugin.instantiate().unwrap();
    let mut resumed = snapshot;
    second.fold(&mut resumed, DAY, &samples(b)).unwrap();
    assert_eq!(
        second.finish(&resumed, DAY).unwrap(),
        Some(plain_sum(&VALUES) / VALUES.len() as f64)
    );
}

#[test]
fn a_file_that_is_not_a_component_is_refused_with_a_clear_error() {
    let host = PluginHost::new(PluginLimits::default()).unwrap();
    let err = host
        .load_bytes("garbage", b"\0asm-not-really")
        .err()
        .expect("refused");
    assert!(matches!(err, PluginError::NotAComponent { .. }), "{err}");
}

#[test]
fn a_corrupt_accumulator_is_an_error_not_a_crash() {
    let mut instance = load("sum").instantiate().unwrap();
    let mut state = vec![1, 2, 3];
    let err = instance
        .fold(&mut state, DAY, &samples(&VALUES))
        .unwrap_err();
    assert!(matches!(err, PluginError::Returned { .. }), "{err}");
    // The instance is still usable afterwards.
    let mut fresh = instance.init(&[], 1, DAY).unwrap();
    instance.fold(&mut fresh, DAY, &samples(&VALUES)).unwrap();
}
