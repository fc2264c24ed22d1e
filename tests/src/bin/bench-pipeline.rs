//! Whole-pipeline benchmark: a simulated backlog on a fresh `readings` topic, drained by the
//! real host (Kafka → engine with WASM plugins → RedisTimeSeries, raw storage on), next to
//! the raw `TS.MADD` ceiling of the same Redis measured in the same run.
//!
//! Run it with `scripts/bench-pipeline` (release build). Figures go to stdout as a table
//! and as one JSON line for the record.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use iot_simulator::{publish, PublishConfig, SimConfig};
use system_tests::fixture::TestScope;
use system_tests::harness::{run_host_until_caught_up, SystemTopics};

const MADD_BATCH: usize = 1000;

struct Args {
    sites: u32,
    days: u32,
    partitions: i32,
    batch: usize,
}

fn args() -> Args {
    let mut args = Args {
        sites: 10,
        days: 15,
        partitions: 6,
        batch: 5000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--sites" => args.sites = value().parse().expect("--sites N"),
            "--days" => args.days = value().parse().expect("--days N"),
            "--partitions" => args.partitions = value().parse().expect("--partitions N"),
            "--batch" => args.batch = value().parse().expect("--batch N"),
            "-h" | "--help" => {
                println!("bench-pipeline [--sites N] [--days N] [--partitions N] [--batch N]");
                std::process::exit(0);
            }
            other => panic!("unknown flag {other}; see --help"),
        }
    }
    args
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = args();
    let mut scope = TestScope::new("bench_pipeline");
    let topics = SystemTopics::create(&mut scope, args.partitions).await;
    let fleet = SimConfig {
        sites: args.sites,
        seed: 1,
        start_ms: 1_577_836_800_000,
        days: Some(args.days),
        site_prefix: format!("{}-s", scope.id),
    };
    eprintln!(
        "publishing {} sites × {} days to {} ({} partitions)…",
        args.sites, args.days, topics.readings, args.partitions
    );
    let report = publish(
        PublishConfig::fast(&scope.services.kafka_bootstrap, &topics.readings, fleet),
        Arc::new(AtomicBool::new(false)),
    )
    .await
    .expect("the simulator ran");
    let backlog = report.acknowledged;
    eprintln!("backlog of {backlog} readings ready; draining it with the host…");

    let started = Instant::now();
    let stats = run_host_until_caught_up(&scope, &topics, args.batch).await;
    let host_secs = started.elapsed().as_secs_f64();
    assert_eq!(stats.records, backlog, "the host read the whole backlog");
    let host_rate = backlog as f64 / host_secs;

    eprintln!("measuring the TS.MADD ceiling with {backlog} samples in batches of {MADD_BATCH}…");
    let madd_rate = madd_ceiling(&scope, backlog as usize).await;

    println!("| figure | value |");
    println!("|---|---|");
    println!("| backlog (readings) | {backlog} |");
    println!(
        "| simulator publish rate (readings/s) | {:.0} |",
        report.readings_per_second()
    );
    println!("| host end-to-end (readings/s, raw + aggregates) | {host_rate:.0} |");
    println!("| TS.MADD ceiling, batches of {MADD_BATCH} (samples/s) | {madd_rate:.0} |");
    println!("| host / ceiling | {:.3} |", host_rate / madd_rate);
    println!(
        "{}",
        serde_json::json!({
            "backlog": backlog, "sites": args.sites, "days": args.days, "partitions": args.partitions,
            "host_batch": args.batch, "host_seconds": host_secs, "host_readings_per_s": host_rate,
            "madd_samples_per_s": madd_rate, "ratio": host_rate / madd_rate,
            "outputs_emitted": stats.outputs_emitted,
        })
    );
}

/// Writes `samples` samples over 100 series with TS.MADD batches, pipelined like the host
/// does, and returns samples/s.
async fn madd_ceiling(scope: &TestScope, samples: usize) -> f64 {
    let mut conn = scope.redis_conn().await;
    let keys: Vec<String> = (0..100)
        .map(|i| format!("{}madd-ceiling:{i}", scope.key_prefix()))
        .collect();
    for key in &keys {
        let _: () = redis::cmd("TS.CREATE")
            .arg(key)
            .arg("DUPLICATE_POLICY")
            .arg("LAST")
            .query_async(&mut conn)
            .await
            .expect("TS.CREATE");
    }
    let started = Instant::now();
    let mut written = 0usize;
    let mut ts = 1_577_836_800_000i64;
    while written < samples {
        let mut pipe = redis::pipe();
        for _ in 0..5 {
            let cmd = pipe.cmd("TS.MADD");
            for i in 0..MADD_BATCH {
                cmd.arg(&keys[i % keys.len()])
                    .arg(ts + (i / keys.len()) as i64)
                    .arg(12.5 + i as f64);
            }
            cmd.ignore();
            ts += (MADD_BATCH / keys.len()) as i64 + 1;
            written += MADD_BATCH;
        }
        let _: () = pipe.query_async(&mut conn).await.expect("TS.MADD");
    }
    written as f64 / started.elapsed().as_secs_f64()
}
