//! `iot-host validate`: what a plugin author runs before deploying a build. It goes through
//! the host's own loading path (so what passes here loads in the host) and then calls the
//! plugin once the way the engine does, under the limits given.

use std::time::Instant;

use iot_protocol::time::{DAY_MS, STEP_MS};

use crate::config::ValidateArgs;
use crate::plugin::{PluginError, PluginHost, PluginKind, Sample, Window};

/// A fixed day for the probe window: 2024-01-01T00:00Z → 2024-01-02T00:00Z.
const PROBE_DAY_END: i64 = 1_704_153_600_000;

/// Validates every file; prints a report per file and returns whether all passed.
pub fn validate(args: &ValidateArgs) -> anyhow::Result<bool> {
    let host = PluginHost::new(args.limits.limits())?;
    let mut all_ok = true;
    for file in &args.files {
        match validate_one(&host, file, args) {
            Ok(report) => println!("ok   {}\n{report}", file.display()),
            Err(e) => {
                all_ok = false;
                println!("FAIL {}\n     {e:#}", file.display());
            }
        }
    }
    Ok(all_ok)
}

fn validate_one(
    host: &PluginHost,
    file: &std::path::Path,
    args: &ValidateArgs,
) -> anyhow::Result<String> {
    let started = Instant::now();
    let plugin = host.load_file(file)?;
    let loaded_in = started.elapsed();
    let info = plugin.info().clone();
    let mut instance = plugin.instantiate()?;
    let window = Window {
        start_ms: PROBE_DAY_END - DAY_MS,
        end_ms: PROBE_DAY_END,
    };
    let samples = probe_samples(args.samples, info.min_inputs);
    // The value reported is of all calls' samples: `calls` times the probe's.
    let started = Instant::now();
    let mut fuel = Vec::with_capacity(3);
    let mut state = instance
        .init(&args.params, info.min_inputs, window)
        .map_err(|e| match e {
            // An error the plugin returns from init is most often about its parameters.
            PluginError::Returned { .. } => anyhow::anyhow!(
                "{e} (if the plugin needs parameters, pass them with --param key=value)"
            ),
            e => e.into(),
        })?;
    fuel.extend(instance.last_call_fuel());
    let mut costliest_fold = None;
    for _ in 0..args.calls {
        instance.fold(&mut state, window, &samples)?;
        costliest_fold = costliest_fold.max(instance.last_call_fuel());
    }
    fuel.extend(costliest_fold);
    let rule = plugin.kind() == PluginKind::AlarmRule;
    let value = instance.finish(&state, window)?;
    if !rule {
        fuel.extend(instance.last_call_fuel());
    }
    let called_in = started.elapsed();
    let alarms = instance.take_alarms().count();
    let result = if rule {
        format!("{alarms} alarms")
    } else {
        value.map_or("no value".to_owned(), |v| v.to_string())
    };
    let usage = probe_usage(&fuel, instance.memory_bytes(), args);
    let imports: Vec<String> = plugin
        .imports()
        .map(|(import, given)| format!("{import} ({given})"))
        .collect();
    let imports = if imports.is_empty() {
        "none".to_owned()
    } else {
        imports.join(", ")
    };
    Ok(format!(
        "     {}: name {:?}, state version {}, inputs {}..={}, includes window start: {}\n     \
         imports: {imports}\n     build {}\n     compiled and checked in {:.1} ms; probe window of {} samples: {} in {:.3} ms \
         (accumulator {} bytes, bound {} bytes per window)\n     {usage}",
        if rule { "alarm rule" } else { "aggregation" },
        info.name,
        info.state_version,
        info.min_inputs,
        info.max_inputs,
        info.includes_window_start,
        plugin.short_hash(),
        loaded_in.as_secs_f64() * 1e3,
        samples.len() * args.calls as usize,
        result,
        called_in.as_secs_f64() * 1e3,
        state.len(),
        args.limits.max_state_bytes,
    ))
}

/// What the probe used against the limits a tenant sets: fuel per call (init, fold,
/// finish) and linear memory, so an author knows which limits a plugin needs.
fn probe_usage(fuel: &[u64], memory_bytes: usize, args: &ValidateArgs) -> String {
    let after = if args.calls > 1 {
        format!(" after {} fold calls", args.calls)
    } else {
        String::new()
    };
    let mib = |bytes: usize| bytes as f64 / (1024.0 * 1024.0);
    let memory = format!(
        "linear memory {:.1} MiB{after} (cap --max-memory-mib {})",
        mib(memory_bytes),
        args.limits.max_memory_mib
    );
    match fuel {
        [init, fold, finish] => format!(
            "fuel: init {init}, fold {fold}{}, finish {finish} (bound --fuel-per-call {} per call); {memory}",
            if args.calls > 1 { " (the costliest call)" } else { "" },
            args.limits.fuel_per_call
        ),
        [init, fold] => format!(
            "fuel: init {init}, fold {fold}{} (bound --fuel-per-call {} per call); {memory}",
            if args.calls > 1 { " (the costliest call)" } else { "" },
            args.limits.fuel_per_call
        ),
        _ => format!("fuel: not metered (no fuel bound); {memory}"),
    }
}

/// `n` samples at 15-minute steps ending at the window's end, values 1, 2, 3, …, spread
/// round-robin over the plugin's minimum number of inputs.
fn probe_samples(n: usize, inputs: u32) -> Vec<Sample> {
    (0..n)
        .map(|i| {
            Sample::new(
                i as u32 % inputs.max(1),
                PROBE_DAY_END - DAY_MS + STEP_MS * ((i as i64 % 96) + 1),
                (i + 1) as f64,
            )
        })
        .collect()
}
