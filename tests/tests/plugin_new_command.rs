//! `iot-host plugin new`: the crate it makes builds for wasm32-wasip2, passes its own tests
//! (its component through the host's harness included), validates, and gives the value an independent computation expects on the day of readings
//! it ships; in a workspace's `plugins/` folder it joins that workspace.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use system_tests::fixture::{host_binary, repo_root};

/// The template's parameter, and the day of readings `plugin new` writes (`day.csv`):
/// 96 readings whose values cycle through 0.5, 1.0, …, 5.0 starting at step 1.
const SCALE: f64 = 2.0;
const STEPS: u32 = 96;

/// The oracle: the mean of `day.csv`'s values times the scale, from the file's own numbers.
fn expected_day_value(csv: &Path) -> f64 {
    let text = std::fs::read_to_string(csv).expect("day.csv");
    let values: Vec<f64> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(values.len(), STEPS as usize, "{}", csv.display());
    values.iter().sum::<f64>() / values.len() as f64 * SCALE
}

/// A folder of its own for this test run, removed first if an earlier run left it.
fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("plugin-new-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(command: &mut Command) -> Output {
    let output = command.output().expect("the command runs");
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn cargo() -> Command {
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    // One target folder for every run, so the SDK's dependencies compile once.
    cargo.env("CARGO_TARGET_DIR", repo_root().join("target/test-scaffold"));
    cargo
}

#[test]
fn a_new_plugin_builds_passes_its_tests_validates_and_gives_the_expected_value() {
    let dir = fresh_dir("standalone");
    run(Command::new(host_binary())
        .args(["plugin", "new", "scaled-mean", "--dir"])
        .arg(&dir));
    let crate_dir = dir.join("scaled-mean");
    let manifest = crate_dir.join("Cargo.toml");

    // Its own tests: the unit tests, and tests/component.rs, which builds the component and
    // runs it through the harness of this checkout's host.
    let tested = run(cargo()
        .env("IOT_HOST", host_binary())
        .arg("test")
        .arg("--manifest-path")
        .arg(&manifest));
    let text = String::from_utf8_lossy(&tested.stdout);
    assert!(
        text.contains("test the_component_gives_the_scaled_mean_of_day_csv ... ok"),
        "{text}"
    );
    run(cargo()
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(&manifest));
    let wasm =
        repo_root().join("target/test-scaffold/wasm32-wasip2/release/plugin_scaled_mean.wasm");
    let validated = run(Command::new(host_binary()).arg("validate").arg(&wasm));
    let text = String::from_utf8_lossy(&validated.stdout);
    assert!(
        text.contains("name \"scaled-mean\", state version 1"),
        "{text}"
    );

    let expected = expected_day_value(&crate_dir.join("day.csv"));
    let tested = run(Command::new(host_binary())
        .args(["plugin", "test"])
        .arg(&wasm)
        .arg("--samples")
        .arg(crate_dir.join("day.csv"))
        .arg("--param")
        .arg(format!("scale={SCALE}"))
        .arg("--expect")
        .arg(format!("2020-01-01={expected}")));
    let text = String::from_utf8_lossy(&tested.stdout);
    assert!(text.starts_with("ok   2020-01-01"), "{text}");

    let again = Command::new(host_binary())
        .args(["plugin", "new", "scaled-mean", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_new_plugin_in_a_workspaces_plugins_folder_joins_that_workspace() {
    let root = fresh_dir("workspace");
    std::fs::write(
        root.join("Cargo.toml"),
        "[workspace]\nresolver = \"2\"\nmembers = [\"plugins/*\"]\n",
    )
    .unwrap();
    let plugins = root.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    run(Command::new(host_binary())
        .args(["plugin", "new", "peak-hour", "--dir"])
        .arg(&plugins));
    let manifest = std::fs::read_to_string(plugins.join("peak-hour/Cargo.toml")).unwrap();
    assert!(
        manifest.contains("name = \"plugin-peak-hour\""),
        "{manifest}"
    );
    assert!(
        manifest.contains("iot-plugin = { workspace = true }"),
        "{manifest}"
    );
    assert!(!manifest.contains("[workspace]"), "{manifest}");
    let lib = std::fs::read_to_string(plugins.join("peak-hour/src/lib.rs")).unwrap();
    assert!(lib.contains("impl Aggregation for PeakHour"), "{lib}");
    std::fs::remove_dir_all(&root).unwrap();
}
