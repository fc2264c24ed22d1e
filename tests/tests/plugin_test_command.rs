//! `iot-host plugin test`, the harness a plugin author runs on readings of their own: it
//! prints and checks each day window's value, exits non-zero when a check fails, and
//! refuses a plugin whose accumulator depends on how the samples were batched.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use system_tests::fixture::{fixture_plugin, host_binary, plugin_dir};

/// 2020-01-01: the day the samples file covers.
const DAY: &str = "2020-01-01";
/// Readings at every 15-minute step of the day, values 0.5, 1.0, …, 48.0.
const STEPS: u32 = 96;
const STEP_VALUE: f64 = 0.5;

/// Writes the day's readings as the harness reads them (`timestamp,value`, with a header).
fn samples_file(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("plugin-test-{name}-{}.csv", std::process::id()));
    let mut text = String::from("timestamp,value\n");
    for k in 1..=STEPS {
        let minutes = 15 * k;
        let (day, hour, minute) = if minutes == 24 * 60 {
            ("2020-01-02", 0, 0)
        } else {
            (DAY, minutes / 60, minutes % 60)
        };
        text.push_str(&format!(
            "{day}T{hour:02}:{minute:02}:00Z,{}\n",
            f64::from(k) * STEP_VALUE
        ));
    }
    std::fs::write(&path, text).expect("samples file");
    path
}

/// The oracle: the sum of the day's values, added in order.
fn day_total() -> f64 {
    (1..=STEPS).map(|k| f64::from(k) * STEP_VALUE).sum()
}

fn plugin_test(plugin: &Path, samples: &Path, args: &[&str]) -> Output {
    Command::new(host_binary())
        .args(["plugin", "test"])
        .arg(plugin)
        .arg("--samples")
        .arg(samples)
        .args(args)
        .output()
        .expect("the host binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn a_shipped_plugin_passes_with_the_expected_value_and_fails_with_another() {
    let samples = samples_file("expect");
    let sum = plugin_dir().join("sum.wasm");
    let expected = format!("{DAY}={}", day_total());
    let passed = plugin_test(&sum, &samples, &["--expect", &expected]);
    assert!(passed.status.success(), "{}", stdout(&passed));
    assert!(
        stdout(&passed).contains(&format!("ok   {DAY}  {}", day_total())),
        "{}",
        stdout(&passed)
    );
    let mean = plugin_test(
        &plugin_dir().join("mean.wasm"),
        &samples,
        &["--expect", &(day_total() / f64::from(STEPS)).to_string()],
    );
    assert!(mean.status.success(), "{}", stdout(&mean));

    let failed = plugin_test(&sum, &samples, &["--expect", "1"]);
    assert!(!failed.status.success(), "a wrong expectation must fail");
    assert!(
        stdout(&failed).contains(&format!("expected 1, got {}", day_total())),
        "{}",
        stdout(&failed)
    );
    let _ = std::fs::remove_file(samples);
}

#[test]
fn a_plugin_whose_result_depends_on_the_batching_is_refused() {
    let samples = samples_file("batching");
    let misbehaving = fixture_plugin("misbehaving");
    let output = plugin_test(&misbehaving, &samples, &["--param", "mode=batch-sensitive"]);
    assert!(!output.status.success(), "{}", stdout(&output));
    assert!(
        stdout(&output).contains("gives other accumulator bytes than one batch"),
        "{}",
        stdout(&output)
    );
    let fine = plugin_test(&misbehaving, &samples, &["--param", "mode=sum"]);
    assert!(fine.status.success(), "{}", stdout(&fine));
    let _ = std::fs::remove_file(samples);
}
