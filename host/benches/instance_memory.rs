//! Resident memory of plugins: for each plugin in the plugin folder, what compiling and
//! loading one [`LoadedPlugin`] adds to the process's resident set (the average over 10
//! copies compiled separately and kept alive; 1 for plugins in other languages), and what
//! each of 100 live instances of it adds (20 for other languages) (each after one `init` + `fold` of a day's 96 samples, all kept
//! alive), next to the component's size on disk and the linear memory an instance starts
//! with (declared in the component).
//!
//!     scripts/build-plugins && cargo bench -p iot-host --bench instance_memory
//!
//! The Python and JavaScript `mean` are measured too when built (`scripts/build-plugins
//! --python`, `--js`), under the deterministic WASI their runtimes need.
//!
//! Plugins are read from `IOT_PLUGIN_DIR` (default `target/plugins`).
//!
//! How: each plugin is measured in fresh child processes (this binary again; three, each
//! figure is their median), so plugins do not inherit each other's heap. In the child, one throw-away load of the same plugin
//! first warms what a process pays once (compiler threads, allocator arenas); before each
//! reading of `/proc/self/statm`, `malloc_trim(0)` hands freed heap back to the kernel, so
//! the compiler's scratch memory is not counted as the plugin's. `statm` counts a page once
//! per mapping: pages of the component's data image that instances map copy-on-write and
//! have only read are counted in every instance (the "file/shared" part), though the
//! kernel holds them once.

use std::path::{Path, PathBuf};
use std::process::Command;

use iot_host::plugin::{
    LoadedPlugin, PluginHost, PluginInstance, PluginLimits, Sample, WasiAccess, Window,
};

/// A plugin measured, and how often.
struct Subject {
    /// Its file in the plugin folder, without `.wasm`.
    name: &'static str,
    /// Separately compiled copies kept alive, to average the compile's footprint.
    loads: usize,
    /// Live instances measured together.
    instances: usize,
    /// Child processes; each figure is the median of their readings.
    runs: usize,
    wasi: WasiAccess,
}

const fn rust(name: &'static str) -> Subject {
    Subject {
        name,
        loads: 10,
        instances: 100,
        runs: 3,
        wasi: WasiAccess::DenyAll,
    }
}

/// A plugin in another language (`scripts/build-plugins --python` / `--js`), measured only
/// if built: fewer copies and one run, since each compile takes seconds.
const fn other_language(name: &'static str) -> Subject {
    Subject {
        name,
        loads: 1,
        instances: 20,
        runs: 1,
        wasi: WasiAccess::Deterministic,
    }
}

const SUBJECTS: [Subject; 9] = [
    rust("sum"),
    rust("mean"),
    rust("count"),
    rust("daily-diff"),
    rust("rest"),
    rust("max"),
    rust("night-count"),
    other_language("python/mean"),
    other_language("js/mean"),
];
const DAY_MS: i64 = 86_400_000;
const STEP_MS: i64 = 900_000;
const WINDOW: Window = Window {
    start_ms: 1_577_836_800_000,
    end_ms: 1_577_836_800_000 + DAY_MS,
};
/// Set in a child process: the plugin it measures.
const CHILD_ENV: &str = "IOT_INSTANCE_MEMORY_CHILD";
const WASM_PAGE: u64 = 64 * 1024;

extern "C" {
    /// glibc: returns free heap memory to the kernel.
    fn malloc_trim(pad: usize) -> i32;
}

fn plugin_dir() -> PathBuf {
    std::env::var_os("IOT_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/plugins"))
}

fn page_kib() -> u64 {
    let out = Command::new("getconf")
        .arg("PAGESIZE")
        .output()
        .expect("getconf PAGESIZE");
    let bytes: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a page size");
    bytes / 1024
}

/// (virtual size, resident, resident file-backed/shared) in KiB, after trimming the heap.
#[derive(Debug, Clone, Copy)]
struct Statm {
    size: u64,
    resident: u64,
    shared: u64,
}

fn statm(page_kib: u64) -> Statm {
    // SAFETY: malloc_trim has no preconditions.
    unsafe { malloc_trim(0) };
    let text = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let f: Vec<u64> = text
        .split_whitespace()
        .map(|v| v.parse().expect("statm field"))
        .collect();
    Statm {
        size: f[0] * page_kib,
        resident: f[1] * page_kib,
        shared: f[2] * page_kib,
    }
}

fn load(host: &PluginHost, path: &Path) -> LoadedPlugin {
    host.load_file(path)
        .unwrap_or_else(|e| panic!("{e} (build the plugins first: scripts/build-plugins)"))
}

/// A day of samples, spread over the plugin's inputs.
fn day(inputs: u32) -> Vec<Sample> {
    (0..96)
        .map(|k| {
            Sample::new(
                k % inputs,
                WINDOW.start_ms + (k as i64 + 1) * STEP_MS,
                10.0 + (k % 7) as f64,
            )
        })
        .collect()
}

/// In the child: measures one plugin and prints one JSON line.
fn child(name: &str) {
    let subject = SUBJECTS
        .iter()
        .find(|s| s.name == name)
        .expect("a subject's name");
    let page = page_kib();
    let path = plugin_dir().join(format!("{name}.wasm"));
    let host = PluginHost::new(PluginLimits {
        wasi: subject.wasi,
        ..PluginLimits::default()
    })
    .expect("engine");
    drop(load(&host, &path));

    let before_load = statm(page);
    let copies: Vec<LoadedPlugin> = (0..subject.loads).map(|_| load(&host, &path)).collect();
    let loaded = statm(page);
    let plugin = &copies[0];

    let inputs = plugin.info().min_inputs;
    let samples = day(inputs);
    let mut live: Vec<(PluginInstance, Vec<u8>)> = Vec::with_capacity(subject.instances);
    for _ in 0..subject.instances {
        let mut instance = plugin.instantiate().expect("instance");
        let mut state = instance.init(&[], inputs, WINDOW).expect("init");
        instance.fold(&mut state, WINDOW, &samples).expect("fold");
        live.push((instance, state));
    }
    let instantiated = statm(page);
    std::hint::black_box(&live);

    println!(
        "{}",
        serde_json::json!({
            "plugin": name,
            "loaded_rss_kib": (loaded.resident as i64 - before_load.resident as i64) as f64 / subject.loads as f64,
            "loads": subject.loads,
            "instances_rss_kib": instantiated.resident as i64 - loaded.resident as i64,
            "instances_shared_kib": instantiated.shared as i64 - loaded.shared as i64,
            "instances_vsz_kib": instantiated.size as i64 - loaded.size as i64,
        })
    );
}

/// Runs one child measuring `name`; its JSON line.
fn measure_in_child(exe: &Path, name: &str) -> serde_json::Value {
    let out = Command::new(exe)
        .env(CHILD_ENV, name)
        .output()
        .expect("the child runs");
    assert!(
        out.status.success(),
        "measuring {name} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).expect("the child's JSON")
}

/// Linear memory an instance starts with: (memories, largest initial size in KiB).
fn declared_memory(path: &Path) -> (u32, u64) {
    let engine = wasmtime::Engine::default();
    let component = wasmtime::component::Component::from_file(&engine, path).expect("a component");
    let r = component
        .resources_required()
        .expect("plugins import no core modules");
    (
        r.num_memories,
        r.max_initial_memory_size.unwrap_or(0) * WASM_PAGE / 1024,
    )
}

fn main() {
    if let Ok(name) = std::env::var(CHILD_ENV) {
        child(&name);
        return;
    }
    // `cargo test --all-targets` runs bench binaries too, without `--bench`: a figure from
    // a debug build would mean nothing, so only `cargo bench` measures.
    if !std::env::args().any(|a| a == "--bench") {
        println!("instance_memory: measured by `cargo bench -p iot-host --bench instance_memory`");
        return;
    }
    let exe = std::env::current_exe().expect("this binary");
    println!(
        "| plugin | component on disk (KiB) | compiled plugin, RSS Δ (KiB) | RSS per instance (KiB) | of which file-backed/shared (KiB) | linear memory at start (KiB) | address space per instance (MiB) |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut rows = Vec::new();
    for subject in &SUBJECTS {
        let name = subject.name;
        let path = plugin_dir().join(format!("{name}.wasm"));
        if subject.wasi == WasiAccess::Deterministic && !path.exists() {
            println!("| {name} | not built (scripts/build-plugins --python / --js) |");
            continue;
        }
        let size = std::fs::metadata(&path)
            .unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (build the plugins first: scripts/build-plugins)",
                    path.display()
                )
            })
            .len();
        let runs: Vec<serde_json::Value> = (0..subject.runs)
            .map(|_| measure_in_child(&exe, name))
            .collect();
        // The median run by each figure.
        let median = |key: &str| {
            let mut v: Vec<f64> = runs.iter().map(|r| r[key].as_f64().unwrap()).collect();
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
            v[v.len() / 2]
        };
        let mut m = serde_json::json!({ "plugin": name, "runs": subject.runs });
        for key in [
            "loaded_rss_kib",
            "instances_rss_kib",
            "instances_shared_kib",
            "instances_vsz_kib",
        ] {
            m[key] = median(key).into();
        }
        let per = |key: &str| m[key].as_f64().unwrap() / subject.instances as f64;
        let (memories, initial_kib) = declared_memory(&path);
        let (rss, shared) = (per("instances_rss_kib"), per("instances_shared_kib"));
        println!(
            "| {name} | {:.1} | {:.0} | {rss:.1} | {shared:.1} | {}{initial_kib} | {:.0} |",
            size as f64 / 1024.0,
            m["loaded_rss_kib"].as_f64().unwrap(),
            if memories == 1 {
                String::new()
            } else {
                format!("{memories} × ")
            },
            per("instances_vsz_kib") / 1024.0,
        );
        let mut row = m.clone();
        row["component_bytes"] = size.into();
        row["memories"] = memories.into();
        row["initial_linear_memory_kib"] = initial_kib.into();
        row["instances"] = subject.instances.into();
        rows.push(row);
    }
    println!("{}", serde_json::Value::Array(rows));
}
