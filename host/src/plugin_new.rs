//! `iot-host plugin new NAME`: a new plugin crate on the SDK that builds, validates and
//! passes its own tests as it is: an aggregation with a parameter (`src/lib.rs`, from
//! `host/templates/plugin/`), its unit tests, and a day of readings (`day.csv`) for
//! `iot-host plugin test`.
//!
//! In this repository's `plugins/` folder the crate joins the workspace (its members include
//! `plugins/*`); anywhere else it is a workspace of its own that uses this checkout's SDK.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::config::PluginNewArgs;

const LIB_RS: &str = include_str!("../templates/plugin/lib.rs");
const COMPONENT_TEST_RS: &str = include_str!("../templates/plugin/component.rs");
const CARGO_IN_WORKSPACE: &str = include_str!("../templates/plugin/Cargo.workspace.toml");
const CARGO_STANDALONE: &str = include_str!("../templates/plugin/Cargo.standalone.toml");
/// This checkout's SDK, for crates made outside its workspace.
const SDK_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../plugins/sdk");

/// Readings in `day.csv`: one day at 15-minute steps.
const DAY_CSV_STEPS: u32 = 96;

/// Creates the crate and prints what to run next.
pub fn run(args: &PluginNewArgs) -> anyhow::Result<()> {
    check_name(&args.name)?;
    let dir = args.dir.join(&args.name);
    if dir.exists() {
        anyhow::bail!(
            "{} already exists; choose another name or folder",
            dir.display()
        );
    }
    let in_workspace = is_plugins_folder_of_a_workspace(&args.dir);
    let manifest = if in_workspace {
        fill(CARGO_IN_WORKSPACE, &args.name, "")
    } else {
        let sdk = Path::new(SDK_DIR).canonicalize().with_context(|| {
            format!(
                "the plugin SDK is not at {SDK_DIR}: run `iot-host plugin new` built from an \
                 iot-stream checkout, or make the crate in its plugins/ folder"
            )
        })?;
        fill(CARGO_STANDALONE, &args.name, &sdk.display().to_string())
    };
    write(&dir.join("Cargo.toml"), &manifest)?;
    write(&dir.join("src/lib.rs"), &fill(LIB_RS, &args.name, ""))?;
    write(
        &dir.join("tests/component.rs"),
        &fill(COMPONENT_TEST_RS, &args.name, ""),
    )?;
    write(&dir.join("day.csv"), &day_csv())?;
    print_next_steps(&args.name, &dir, in_workspace);
    Ok(())
}

/// Names become file names (`NAME.wasm`), package names (`plugin-NAME`) and pipeline
/// references: lowercase letters, digits and dashes, starting with a letter.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !ok {
        anyhow::bail!(
            "plugin name {name:?}: use lowercase letters, digits and dashes, starting with a \
             letter (e.g. `peak-hour`)"
        );
    }
    Ok(())
}

/// Whether `dir` is the `plugins/` folder of a workspace whose members include `plugins/*`.
fn is_plugins_folder_of_a_workspace(dir: &Path) -> bool {
    let Some(root) = dir
        .canonicalize()
        .ok()
        .and_then(|d| d.parent().map(Path::to_owned))
    else {
        return false;
    };
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap_or_default();
    dir.file_name().is_some_and(|n| n == "plugins")
        && manifest.contains("[workspace]")
        && manifest.contains("\"plugins/*\"")
}

/// The template with its placeholders filled in.
fn fill(template: &str, name: &str, sdk: &str) -> String {
    template
        .replace("{{name}}", name)
        .replace("{{type}}", &type_name(name))
        .replace("{{sdk}}", sdk)
}

/// `peak-hour` → `PeakHour`.
fn type_name(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or(String::new(), |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

/// 2020-01-01 00:15 … 2020-01-02 00:00 (one day window), values 0.5, 1.0, … 5.0 repeating.
fn day_csv() -> String {
    let mut csv = String::from("# timestamp,value: one day of 15-minute readings\n");
    for step in 1..=DAY_CSV_STEPS {
        let minutes = step * 15;
        let (day, hour, minute) = (1 + minutes / 1440, (minutes % 1440) / 60, minutes % 60);
        let value = f64::from(step % 10 + 1) * 0.5;
        csv.push_str(&format!(
            "2020-01-{day:02}T{hour:02}:{minute:02}:00Z,{value}\n"
        ));
    }
    csv
}

fn write(path: &PathBuf, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

fn print_next_steps(name: &str, dir: &Path, in_workspace: bool) {
    let dir = dir.display();
    println!(
        "created {dir}: Cargo.toml, src/lib.rs (an aggregation and its unit tests), \
         tests/component.rs (the built component through the host's harness), day.csv"
    );
    println!("next:");
    if in_workspace {
        println!(
            "  cargo test -p plugin-{name}              # its tests, the component's included"
        );
        println!("  scripts/build-plugins {name}             # -> target/plugins/{name}.wasm");
        println!("  iot-host validate target/plugins/{name}.wasm");
        println!("  iot-host plugin test target/plugins/{name}.wasm --samples {dir}/day.csv");
    } else {
        let wasm = format!(
            "{dir}/target/wasm32-wasip2/release/plugin_{}.wasm",
            name.replace('-', "_")
        );
        println!("  IOT_HOST=<iot-stream>/target/debug/iot-host cargo test --manifest-path {dir}/Cargo.toml");
        println!("  cargo build --manifest-path {dir}/Cargo.toml --target wasm32-wasip2 --release");
        println!("  iot-host validate {wasm}");
        println!("  iot-host plugin test {wasm} --samples {dir}/day.csv");
    }
    println!(
        "then copy the .wasm into the host's plugin folder as {name}.wasm (plugins/README.md)"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_type_names_and_bad_names_are_refused() {
        assert_eq!(type_name("peak-hour"), "PeakHour");
        assert_eq!(type_name("p95"), "P95");
        for bad in ["Peak", "9lives", "peak_hour", "peak-", "", "a b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_day_of_readings_is_one_window() {
        let csv = day_csv();
        let lines: Vec<&str> = csv.lines().skip(1).collect();
        assert_eq!(lines.len(), DAY_CSV_STEPS as usize);
        assert_eq!(lines[0], "2020-01-01T00:15:00Z,1");
        assert_eq!(lines[95], "2020-01-02T00:00:00Z,3.5");
    }
}
