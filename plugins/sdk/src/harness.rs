//! The host's plugin harness from a plugin's own `cargo test` (native builds only).
//!
//! Unit tests call the trait's functions directly; this runs the *component*: it builds
//! the crate for `wasm32-wasip2` and hands the file to `iot-host plugin test`, which loads
//! it exactly as the host does (same sandbox, limits and lowering), folds each day window
//! of a samples file, checks the expected values, and checks the WIT rule that folding in
//! one batch or several gives the same accumulator bytes.
//!
//! ```ignore
//! #[test]
//! fn the_component_passes_the_host_harness() {
//!     iot_plugin::component_test!()
//!         .samples("day.csv")
//!         .param("scale", "2")
//!         .expect("2020-01-01=97")
//!         .run();
//! }
//! ```
//!
//! The component is built with `cargo build --release` into `plugin-harness/` beside the
//! test's own target folder (a cargo build cannot share the folder the running `cargo
//! test` holds). `iot-host` is taken from `IOT_HOST`, else from that target folder
//! (`debug/` or `release/`, as in this repository's workspace), else from `PATH`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The test of this crate's component: `iot_plugin::component_test!()`.
#[macro_export]
macro_rules! component_test {
    () => {
        $crate::harness::ComponentTest::new(env!("CARGO_MANIFEST_DIR"), env!("CARGO_PKG_NAME"))
    };
}

/// What to run through `iot-host plugin test`; [`ComponentTest::run`] runs it.
#[derive(Debug, Clone)]
pub struct ComponentTest {
    manifest_dir: PathBuf,
    package: String,
    samples: Option<PathBuf>,
    args: Vec<OsString>,
}

impl ComponentTest {
    /// The crate at `manifest_dir`, package `package` (use [`component_test!`]).
    pub fn new(manifest_dir: &str, package: &str) -> ComponentTest {
        ComponentTest {
            manifest_dir: PathBuf::from(manifest_dir),
            package: package.to_owned(),
            samples: None,
            args: Vec::new(),
        }
    }

    /// The readings file (`timestamp,value[,input]` a line), relative to the crate's folder.
    pub fn samples(mut self, file: impl AsRef<Path>) -> Self {
        self.samples = Some(self.manifest_dir.join(file));
        self
    }

    /// The readings themselves, `(UTC milliseconds, value)` of input 0, written to a
    /// samples file for the harness (so a test can compute its expectations from the same
    /// numbers).
    pub fn readings(self, readings: &[(i64, f64)]) -> Self {
        self.readings_of_inputs(
            &readings
                .iter()
                .map(|&(ts_ms, value)| (ts_ms, value, 0))
                .collect::<Vec<_>>(),
        )
    }

    /// Like [`ComponentTest::readings`], each with the position of its input.
    pub fn readings_of_inputs(mut self, readings: &[(i64, f64, u32)]) -> Self {
        static WRITTEN: AtomicUsize = AtomicUsize::new(0);
        let dir = test_target_dir().join("plugin-harness/samples");
        std::fs::create_dir_all(&dir).expect("a folder for samples files");
        let file = dir.join(format!(
            "{}-{}-{}.csv",
            self.package,
            std::process::id(),
            WRITTEN.fetch_add(1, Ordering::Relaxed)
        ));
        let lines: String = readings
            .iter()
            .map(|(ts_ms, value, input)| format!("{ts_ms},{value:?},{input}\n"))
            .collect();
        std::fs::write(&file, lines).expect("the samples file is written");
        self.samples = Some(file);
        self
    }

    /// A parameter for `init`, as the pipeline file's `[output.params]` gives it.
    pub fn param(self, key: &str, value: &str) -> Self {
        self.arg("--param", format!("{key}={value}"))
    }

    /// How many inputs the output declares (default: the plugin's minimum).
    pub fn inputs(self, inputs: u32) -> Self {
        self.arg("--inputs", inputs.to_string())
    }

    /// An expected value, as `--expect` takes it: `12.5` for every window,
    /// `2020-01-01=12.5` for one day's window, `none` (or `2020-01-01=none`) for no value.
    pub fn expect(self, expectation: impl Into<String>) -> Self {
        self.arg("--expect", expectation.into())
    }

    /// Any other flag of `iot-host plugin test` (`--wasi`, `--fuel-per-call`, ...).
    pub fn arg(mut self, flag: &str, value: impl Into<OsString>) -> Self {
        self.args.push(flag.into());
        self.args.push(value.into());
        self
    }

    /// Builds the component, runs the harness on it and returns its report (a line per
    /// window); panics with the report, or with what to do, if anything fails.
    pub fn run(self) -> String {
        let samples = self
            .samples
            .as_ref()
            .expect("ComponentTest needs .samples(\"file.csv\") or .readings(...)");
        let component = self.build();
        let host = iot_host();
        let output = Command::new(&host)
            .args(["plugin", "test"])
            .arg(&component)
            .arg("--samples")
            .arg(samples)
            .args(&self.args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", host.display()));
        let report = text(&output);
        assert!(
            output.status.success(),
            "the harness failed on {}:\n{report}",
            component.display()
        );
        report
    }

    /// `cargo build --release --target wasm32-wasip2` of this crate; the `.wasm` it made.
    fn build(&self) -> PathBuf {
        let target_dir = test_target_dir().join("plugin-harness");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let output = Command::new(cargo)
            .current_dir(&self.manifest_dir)
            .args(["build", "--release", "--target", "wasm32-wasip2", "-p"])
            .arg(&self.package)
            .arg("--target-dir")
            .arg(&target_dir)
            .output()
            .expect("cargo runs");
        assert!(
            output.status.success(),
            "building {} for wasm32-wasip2 failed (is the target installed? `rustup target add \
             wasm32-wasip2`):\n{}",
            self.package,
            text(&output)
        );
        let file = format!("{}.wasm", self.package.replace('-', "_"));
        target_dir.join("wasm32-wasip2/release").join(file)
    }
}

/// The target folder of the running test binary (`<target>/debug/deps/<test>`).
fn test_target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.ancestors()
        .nth(3)
        .expect("a test binary lives in <target>/<profile>/deps/")
        .to_path_buf()
}

fn iot_host() -> PathBuf {
    if let Some(path) = std::env::var_os("IOT_HOST") {
        return PathBuf::from(path);
    }
    let target = test_target_dir();
    ["debug", "release"]
        .iter()
        .map(|profile| target.join(profile).join("iot-host"))
        .find(|path| path.is_file())
        .or_else(|| on_path("iot-host"))
        .unwrap_or_else(|| {
            panic!(
                "iot-host not found (not in IOT_HOST, {}/{{debug,release}}/ or PATH): build it \
                 with `cargo build -p iot-host` in the iot-stream repository and set \
                 IOT_HOST=<repository>/target/debug/iot-host",
                target.display()
            )
        })
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
