//! Readings per second through the WASM `sum` and `mean` folds, next to the same folds
//! written natively in Rust (same accumulator bytes, same summation order), for batches of
//! 1, 64 and 1024 samples; the share of that which is the call and the copy of the batch
//! into the plugin's memory (`count`, which does no per-sample work); and the cost of the
//! CPU bound (fuel, the default; a wall-clock deadline by epoch interruption; none); and
//! `mean` written in Rust, Python and JavaScript (the last two when built with
//! `scripts/build-plugins --python` / `--js`; under the deterministic WASI they need).
//!
//!     scripts/build-plugins && cargo bench -p iot-host --bench fold
//!
//! Plugins are read from `IOT_PLUGIN_DIR` (default `target/plugins`).

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use iot_host::plugin::{PluginHost, PluginInstance, PluginLimits, Sample, WasiAccess, Window};

const DAY_MS: i64 = 86_400_000;
const STEP_MS: i64 = 900_000;
const WINDOW: Window = Window {
    start_ms: 1_577_836_800_000,
    end_ms: 1_577_836_800_000 + DAY_MS,
};
const BATCH_SIZES: [usize; 3] = [1, 64, 1024];

fn plugin_dir() -> PathBuf {
    std::env::var_os("IOT_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/plugins"))
}

fn instance(name: &str, limits: PluginLimits) -> PluginInstance {
    let path = plugin_dir().join(format!("{name}.wasm"));
    PluginHost::new(limits)
        .expect("engine")
        .load_file(&path)
        .unwrap_or_else(|e| panic!("{e} (build the plugins first: scripts/build-plugins)"))
        .instantiate()
        .expect("instance")
}

fn batch(len: usize) -> Vec<Sample> {
    (0..len)
        .map(|k| {
            Sample::new(
                0,
                WINDOW.start_ms + (k as i64 % 96 + 1) * STEP_MS,
                (k % 200) as f64 * 0.5,
            )
        })
        .collect()
}

/// The native equivalent of the `sum` and `mean` plugins' fold: same 16-byte accumulator
/// (total f64, count u64, little-endian), same order of additions.
fn native_fold(state: &mut Vec<u8>, samples: &[Sample]) -> Result<(), String> {
    let bytes: &[u8; 16] = state.as_slice().try_into().map_err(|_| "bad state")?;
    let mut total = f64::from_le_bytes(bytes[..8].try_into().unwrap());
    let count = u64::from_le_bytes(bytes[8..].try_into().unwrap());
    for sample in samples {
        total += sample.value;
    }
    state[..8].copy_from_slice(&total.to_le_bytes());
    state[8..].copy_from_slice(&(count + samples.len() as u64).to_le_bytes());
    Ok(())
}

fn folds(c: &mut Criterion) {
    for plugin in ["sum", "mean"] {
        let mut group = c.benchmark_group(format!("fold/{plugin}"));
        let mut wasm = instance(plugin, PluginLimits::default());
        for size in BATCH_SIZES {
            let samples = batch(size);
            group.throughput(Throughput::Elements(size as u64));
            group.bench_with_input(BenchmarkId::new("wasm", size), &samples, |b, samples| {
                let mut state = wasm.init(&[], 1, WINDOW).unwrap();
                b.iter(|| wasm.fold(&mut state, WINDOW, black_box(samples)).unwrap());
            });
            group.bench_with_input(BenchmarkId::new("native", size), &samples, |b, samples| {
                let mut state = vec![0u8; 16];
                b.iter(|| native_fold(&mut state, black_box(samples)).unwrap());
            });
        }
        group.finish();
    }
}

fn transport(c: &mut Criterion) {
    let mut group = c.benchmark_group("fold/count-transport-only");
    let mut wasm = instance("count", PluginLimits::default());
    for size in BATCH_SIZES {
        let samples = batch(size);
        group.throughput(Throughput::Elements(size as u64));
        group.bench_with_input(BenchmarkId::new("wasm", size), &samples, |b, samples| {
            let mut state = wasm.init(&[], 1, WINDOW).unwrap();
            b.iter(|| wasm.fold(&mut state, WINDOW, black_box(samples)).unwrap());
        });
    }
    group.finish();
}

/// The CPU bound's cost: fuel (the default), a wall-clock bound by epoch interruption
/// instead, and no bound at all.
fn cpu_bound(c: &mut Criterion) {
    let mut group = c.benchmark_group("fold/sum-cpu-bound");
    let unmetered = PluginLimits {
        fuel_per_call: None,
        ..PluginLimits::default()
    };
    let deadline = PluginLimits {
        wall_clock_per_call: Some(Duration::from_secs(1)),
        ..unmetered
    };
    for (label, limits) in [
        ("fuel", PluginLimits::default()),
        ("epoch-deadline", deadline),
        ("none", unmetered),
    ] {
        let mut wasm = instance("sum", limits);
        for size in [1, 1024] {
            let samples = batch(size);
            group.throughput(Throughput::Elements(size as u64));
            group.bench_with_input(BenchmarkId::new(label, size), &samples, |b, samples| {
                let mut state = wasm.init(&[], 1, WINDOW).unwrap();
                b.iter(|| wasm.fold(&mut state, WINDOW, black_box(samples)).unwrap());
            });
        }
    }
    group.finish();
}

/// `mean` by language at batch 1,024 (a plugin in another language is skipped if not built).
fn languages(c: &mut Criterion) {
    let mut group = c.benchmark_group("fold/mean-by-language");
    let deterministic = PluginLimits {
        wasi: WasiAccess::Deterministic,
        ..PluginLimits::default()
    };
    let samples = batch(1024);
    group.throughput(Throughput::Elements(samples.len() as u64));
    for (label, file) in [
        ("rust", "mean"),
        ("python", "python/mean"),
        ("javascript", "js/mean"),
    ] {
        if !plugin_dir().join(format!("{file}.wasm")).exists() {
            println!(
                "fold/mean-by-language/{label}: {file}.wasm not built (scripts/build-plugins)"
            );
            continue;
        }
        let mut wasm = instance(file, deterministic);
        group.bench_with_input(BenchmarkId::new(label, 1024), &samples, |b, samples| {
            let mut state = wasm.init(&[], 1, WINDOW).unwrap();
            b.iter(|| wasm.fold(&mut state, WINDOW, black_box(samples)).unwrap());
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = folds, transport, cpu_bound, languages
}
criterion_main!(benches);
