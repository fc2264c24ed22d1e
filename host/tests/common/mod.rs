//! Shared by the host's integration tests: the built plugins and the fixture components.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The plugins of `plugins/`, as the pipeline names them.
pub const PLUGINS: [&str; 7] = [
    "sum",
    "mean",
    "count",
    "daily-diff",
    "rest",
    "max",
    "night-count",
];

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Runs a cargo build for wasm32-wasip2 in its own target folder (never the one the running
/// `cargo test` holds) and panics with its output if it fails.
fn cargo_build_wasm(what: &str, mut command: Command) {
    let output = command
        .args(["--target", "wasm32-wasip2"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo to build {what}: {e}"));
    assert!(
        output.status.success(),
        "building {what} failed (is the wasm32-wasip2 target installed? `rustup target add \
         wasm32-wasip2`, or run scripts/build-plugins):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The folder holding `<name>.wasm` for every plugin.
pub fn plugin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("IOT_PLUGIN_DIR") {
            return PathBuf::from(dir);
        }
        let installed = repo_root().join("target/plugins");
        if PLUGINS
            .iter()
            .all(|p| installed.join(format!("{p}.wasm")).is_file())
        {
            return installed;
        }
        // Not built yet: build them here, as scripts/build-plugins would.
        let target_dir = repo_root().join("target/test-plugins");
        let mut command = cargo();
        command
            .current_dir(repo_root())
            .args(["build", "--profile", "plugin", "--target-dir"])
            .arg(&target_dir);
        for plugin in PLUGINS {
            command.args(["-p", &format!("plugin-{plugin}")]);
        }
        cargo_build_wasm("the plugins", command);
        let out = target_dir.join("plugins");
        std::fs::create_dir_all(&out).unwrap();
        for plugin in PLUGINS {
            let built = target_dir.join(format!(
                "wasm32-wasip2/plugin/plugin_{}.wasm",
                plugin.replace('-', "_")
            ));
            std::fs::copy(&built, out.join(format!("{plugin}.wasm"))).unwrap();
        }
        out
    })
}

/// A component of the fixture workspace `host/tests/fixtures/`, built once per test process.
pub fn fixture(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let target_dir = repo_root().join("target/test-fixtures");
        let mut command = cargo();
        command
            .current_dir(repo_root().join("host/tests/fixtures"))
            .args(["build", "--release", "--target-dir"])
            .arg(&target_dir);
        cargo_build_wasm("the test fixtures in host/tests/fixtures", command);
        target_dir.join("wasm32-wasip2/release")
    });
    dir.join(format!("fixture_{}.wasm", name.replace('-', "_")))
}

/// The pipeline of the engine-alone tests: one output, HVAC1's daily sum.
const HVAC1_SUM_PIPELINE: &str =
    "[[output]]\nname = \"HVAC1\"\nkind = \"AggDay\"\nplugin = \"sum\"\ninputs = [\"HVAC1\"]\n";

/// An engine (no services) whose only output is HVAC1's daily sum, with `config`; no
/// partition is placed yet.
pub fn hvac1_sum_engine(config: iot_host::engine::EngineConfig) -> iot_host::engine::Engine {
    use std::collections::HashMap;
    use std::sync::Arc;
    let pipeline = Arc::new(iot_host::pipeline::Pipeline::parse(HVAC1_SUM_PIPELINE).unwrap());
    let host =
        iot_host::plugin::PluginHost::new(iot_host::plugin::PluginLimits::default()).unwrap();
    let sum = host.load_file(&plugin_dir().join("sum.wasm")).unwrap();
    iot_host::engine::Engine::new(config, pipeline, &HashMap::from([("sum".to_owned(), sum)]))
        .unwrap()
}

/// A JSON HVAC1 reading of `site` at `ts_ms` (UTC ms), at `offset` of `partition`.
pub fn hvac1_reading(
    partition: i32,
    offset: i64,
    site: &str,
    ts_ms: i64,
    value: f64,
) -> iot_host::engine::SourceRecord {
    let ts = chrono::DateTime::from_timestamp_millis(ts_ms)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%SZ");
    iot_host::engine::SourceRecord {
        partition,
        offset,
        key: Some(site.as_bytes().to_vec()),
        payload: format!(r#"{{"site":"{site}","sensor":"HVAC1","ts":"{ts}","value":{value}}}"#)
            .into_bytes(),
    }
}

/// A plugin in another language, `plugins/<lang>/<name>`, made into a component by
/// `scripts/build-plugins --<lang> <name>` (which installs the toolchain if missing and
/// rebuilds only what changed), once per test process.
fn other_language_plugin(lang: &str, name: &str) -> PathBuf {
    let output = Command::new("bash")
        .arg(repo_root().join("scripts/build-plugins"))
        .args([format!("--{lang}"), name.to_owned()])
        .output()
        .expect("bash runs scripts/build-plugins");
    assert!(
        output.status.success(),
        "scripts/build-plugins --{lang} {name} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    repo_root().join(format!("target/plugins/{lang}/{name}.wasm"))
}

/// The Python `mean` (`plugins/python/mean`, componentize-py).
pub fn python_mean() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| other_language_plugin("python", "mean"))
}

/// The JavaScript `mean` (`plugins/js/mean`, componentize-js).
pub fn js_mean() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| other_language_plugin("js", "mean"))
}
