//! Tenant isolation benchmark: what a faulty tenant costs the others. Tenant `a` runs the
//! reference pipeline; tenant `b`, on the same host and partitions, runs it plus one more
//! output whose plugin is healthy (`sum`), loops until its fuel bound stops it, or is slow
//! on every call while staying under the bound (`--spin` iterations per call). The same
//! backlog is drained by the real host in each case; the difference in time is what `b`'s
//! plugin costs everyone.
//!
//! Run it with `scripts/bench-tenants` (release build).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use iot_simulator::{publish, PublishConfig, SimConfig};
use system_tests::fixture::{fixture_plugin, plugin_dir, TestScope};
use system_tests::harness::SystemTopics;
use system_tests::live_host::{HostFiles, LiveHost, REFERENCE_PIPELINE, REFERENCE_PLUGINS};
use system_tests::topic::read_all;

/// 2020-01-01T00:00:00Z.
const RUN_START_MS: i64 = 1_577_836_800_000;
const PARTITIONS: i32 = 6;

struct Args {
    sites: u32,
    days: u32,
    fuel: u64,
    spin: u64,
}

/// Tenant b's extra output.
#[derive(Clone, Copy, PartialEq)]
enum Probe {
    Healthy,
    Looping,
    Slow,
}

fn args() -> Args {
    let mut args = Args {
        sites: 5,
        days: 10,
        fuel: 50_000_000,
        spin: 3_000_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--sites" => args.sites = value().parse().expect("--sites N (per tenant)"),
            "--days" => args.days = value().parse().expect("--days N"),
            "--fuel" => {
                args.fuel = value()
                    .parse()
                    .expect("--fuel N (tenant b's fuel per call)")
            }
            "--spin" => {
                args.spin = value()
                    .parse()
                    .expect("--spin N (iterations of the slow plugin per call)")
            }
            "-h" | "--help" => {
                println!("bench-tenants [--sites N per tenant] [--days N] [--fuel N] [--spin N]");
                std::process::exit(0);
            }
            other => panic!("unknown flag {other}; see --help"),
        }
    }
    args
}

struct Outcome {
    readings: usize,
    seconds: f64,
    plugin_errors: usize,
}

async fn publish_tenant(scope: &TestScope, topic: &str, prefix: String, args: &Args, seed: u64) {
    let report = publish(
        PublishConfig::fast(
            &scope.services.kafka_bootstrap,
            topic,
            SimConfig {
                sites: args.sites,
                seed,
                start_ms: RUN_START_MS,
                days: Some(args.days),
                site_prefix: prefix,
            },
        ),
        Arc::new(AtomicBool::new(false)),
    )
    .await
    .expect("the simulator ran");
    assert!(report.failure.is_none(), "{:?}", report.failure);
}

async fn run(args: &Args, probe: Probe) -> Outcome {
    let name = match probe {
        Probe::Healthy => "bench_tenants_healthy",
        Probe::Looping => "bench_tenants_looping",
        Probe::Slow => "bench_tenants_slow",
    };
    let mut scope = TestScope::new(name);
    let topics = SystemTopics::create(&mut scope, PARTITIONS).await;
    let (a_sites, b_sites) = (format!("{}-a", scope.id), format!("{}-b", scope.id));
    publish_tenant(&scope, &topics.readings, a_sites.clone(), args, 1).await;
    publish_tenant(&scope, &topics.readings, b_sites.clone(), args, 2).await;
    let readings = read_all(&scope.services.kafka_bootstrap, &topics.readings).len();

    let a = HostFiles::reference(&scope);
    let b = HostFiles::empty(&scope, "tenant-b");
    for name in REFERENCE_PLUGINS {
        b.deploy(name, &plugin_dir().join(format!("{name}.wasm")));
    }
    let (component, mode) = match probe {
        Probe::Healthy => (plugin_dir().join("sum.wasm"), "sum"),
        Probe::Looping => (fixture_plugin("misbehaving"), "loop"),
        Probe::Slow => (fixture_plugin("misbehaving"), "slow"),
    };
    b.deploy("probe", &component);
    b.write_pipeline(&format!(
        "{REFERENCE_PIPELINE}\n[[output]]\nname = \"TH1probe\"\nkind = \"AggDay\"\nplugin = \"probe\"\n\
         inputs = [\"TH1\"]\nunit = \"degC\"\nparams = {{ mode = \"{mode}\", spin = \"{}\" }}\n",
        args.spin
    ));
    let tenants = a.dir.join("tenants.toml");
    std::fs::write(
        &tenants,
        format!(
            "[[tenant]]\nname = \"a\"\nsites = [\"{a_sites}*\"]\nplugins = \"{}\"\npipeline = \"{}\"\n\n\
             [[tenant]]\nname = \"b\"\nsites = [\"{b_sites}*\"]\nplugins = \"{}\"\npipeline = \"{}\"\nfuel_per_call = {}\n",
            a.plugins().display(),
            a.pipeline().display(),
            b.plugins().display(),
            b.pipeline().display(),
            args.fuel,
        ),
    )
    .unwrap();

    let log = std::env::temp_dir().join(format!("{}-host.log", scope.id));
    let started = Instant::now();
    let mut host = LiveHost::start(
        &scope,
        &topics,
        &log,
        &[
            "--tenants",
            tenants.to_str().unwrap(),
            "--exit-when-caught-up",
            "--no-watch",
        ],
    );
    let status = tokio::task::spawn_blocking(move || host.wait())
        .await
        .unwrap();
    let seconds = started.elapsed().as_secs_f64();
    assert!(status.success(), "the host failed; see {}", log.display());
    let plugin_errors = read_all(&scope.services.kafka_bootstrap, &topics.plugin_errors).len();
    let _ = std::fs::remove_file(&log);
    Outcome {
        readings,
        seconds,
        plugin_errors,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = args();
    let healthy = run(&args, Probe::Healthy).await;
    let looping = run(&args, Probe::Looping).await;
    let slow = run(&args, Probe::Slow).await;
    println!(
        "two tenants × {} sites × {} days; tenant b's fuel per call: {}; the slow plugin spins {} iterations a call",
        args.sites, args.days, args.fuel, args.spin
    );
    println!(
        "{:<28} {:>10} {:>10} {:>12} {:>14}",
        "tenant b", "readings", "seconds", "readings/s", "plugin errors"
    );
    for (label, o) in [
        ("healthy", &healthy),
        ("looping plugin", &looping),
        ("slow plugin (under bound)", &slow),
    ] {
        println!(
            "{:<28} {:>10} {:>10.2} {:>12.0} {:>14}",
            label,
            o.readings,
            o.seconds,
            o.readings as f64 / o.seconds,
            o.plugin_errors
        );
    }
    println!(
        "{}",
        serde_json::json!({
            "bench": "tenants",
            "sites_per_tenant": args.sites,
            "days": args.days,
            "fuel_per_call": args.fuel,
            "healthy_seconds": healthy.seconds,
            "looping_seconds": looping.seconds,
            "slow_seconds": slow.seconds,
            "slow_spin": args.spin,
            "slow_plugin_errors": slow.plugin_errors,
            "readings": healthy.readings,
            "looping_plugin_errors": looping.plugin_errors,
        })
    );
}
