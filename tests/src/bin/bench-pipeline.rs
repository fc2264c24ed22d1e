//! Whole-pipeline benchmark: a simulated backlog on a fresh `readings` topic, drained by the
//! real host (Kafka → engine with WASM plugins → RedisTimeSeries, raw storage on), next to
//! the raw `TS.MADD` ceiling of the same Redis measured in the same run.
//!
//! Run it with `scripts/bench-pipeline` (release build). Figures go to stdout as a table
//! and as one JSON line for the record: the drain's rate (from the first batch read to
//! caught up, so the consumer group's join is left out), where the host's time went per
//! stage (`iot_host::profile`), the CPU each process used during the drain (host, Redis,
//! and Kafka when it is the local stack's), and the host process's peak RSS.
//!
//! `--through-stage`: the simulator writes to a topic of its own, `iot-host repartition`
//! copies it to `readings` first (timed on its own), then the host drains `readings`.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use iot_host::profile::{Breakdown, Stage};
use iot_host::runner::{RunOptions, DEFAULT_MAX_IN_FLIGHT};
use iot_simulator::{publish, Format, PublishConfig, SimConfig};
use system_tests::fixture::{LocalService, Sink, TestScope};
use system_tests::harness::{engine_config, run_host_timed, SystemTopics};
use system_tests::measure::{process_cpu_seconds, redis_cpu_seconds};
use system_tests::repartition::StageProcess;

const MADD_BATCH: usize = 1000;

struct Args {
    sites: u32,
    days: u32,
    partitions: i32,
    batch: usize,
    in_flight: usize,
    format: Format,
    /// Publish to a topic of its own and pass it through `iot-host repartition` first.
    through_stage: bool,
    /// Drain into the local Redis Cluster instead of the single Redis.
    redis_cluster: bool,
}

fn args() -> Args {
    let mut args = Args {
        sites: 10,
        days: 15,
        partitions: 6,
        batch: 5000,
        in_flight: DEFAULT_MAX_IN_FLIGHT,
        format: Format::Json,
        through_stage: false,
        redis_cluster: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--sites" => args.sites = value().parse().expect("--sites N"),
            "--days" => args.days = value().parse().expect("--days N"),
            "--partitions" => args.partitions = value().parse().expect("--partitions N"),
            "--batch" => args.batch = value().parse().expect("--batch N"),
            "--in-flight" => args.in_flight = value().parse().expect("--in-flight N"),
            "--format" => {
                args.format = match value().as_str() {
                    "json" => Format::Json,
                    "line" => Format::Line,
                    other => panic!("--format json|line, not {other}"),
                }
            }
            "--through-stage" => args.through_stage = true,
            "--redis-cluster" => args.redis_cluster = true,
            "-h" | "--help" => {
                println!(
                    "bench-pipeline [--sites N] [--days N] [--partitions N] [--batch N] [--in-flight N] [--format json|line] [--through-stage] [--redis-cluster]"
                );
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
    let sink = if args.redis_cluster {
        Sink::RedisCluster
    } else {
        Sink::Redis
    };
    let mut scope = TestScope::on("bench_pipeline", sink);
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
    // With the stage, the simulator writes to a topic of its own and the stage copies it to
    // `readings` (keyed by site, exactly once) before the host drains that.
    let published_to = if args.through_stage {
        scope.create_topic("producer", args.partitions).await
    } else {
        topics.readings.clone()
    };
    let mut publishing = PublishConfig::fast(&scope.services.kafka_bootstrap, &published_to, fleet);
    // The line format carries no site: the host files it under its default site.
    publishing.format = args.format;
    let report = publish(publishing, Arc::new(AtomicBool::new(false)))
        .await
        .expect("the simulator ran");
    let backlog = report.acknowledged;
    let stage_secs = if args.through_stage {
        eprintln!("backlog of {backlog} readings ready; passing it through the repartition stage…");
        Some(pass_through_stage(&scope, &topics, &published_to, args.format).await)
    } else {
        None
    };
    eprintln!("backlog of {backlog} readings ready; draining it with the host…");

    let mut redis = scope.redis_conn().await;
    let kafka_pid = LocalService::Kafka.pid();
    reset_peak_rss();
    let (cpu_before, redis_before, kafka_before) = (
        own_cpu_seconds(),
        redis_cpu_seconds(&mut redis).await,
        kafka_pid.map(process_cpu_seconds),
    );
    let stages_before = Breakdown::now();
    let started = Instant::now();
    let first_batch = tokio::spawn(first_batch_read(stages_before));
    let options = RunOptions {
        max_batch: args.batch,
        max_in_flight: args.in_flight,
        ..RunOptions::default()
    };
    // Ends when the host has caught up with everything durable, not when its clients have
    // closed (leaving the consumer group takes a while, after the work).
    let config = engine_config(&scope, &topics);
    let (stats, ended) = run_host_timed(&scope, &topics, config, options, &mut ()).await;
    let stages = Breakdown::now().since(&stages_before);
    let host_cpu = own_cpu_seconds() - cpu_before;
    let redis_cpu = redis_cpu_seconds(&mut redis).await - redis_before;
    let kafka_cpu = kafka_pid
        .map(process_cpu_seconds)
        .zip(kafka_before)
        .map(|(after, before)| after - before);
    let peak_rss_mib = peak_rss_kib() as f64 / 1024.0;
    let first = first_batch.await.unwrap();
    let host_secs = (ended - started).as_secs_f64();
    let drain_secs = (ended - first).as_secs_f64();
    assert_eq!(stats.records, backlog, "the host read the whole backlog");
    let host_rate = backlog as f64 / drain_secs;
    let from_assignment_secs = iot_host::profile::last_assignment()
        .filter(|&at| at > started)
        .map(|at| (ended - at).as_secs_f64());

    eprintln!("measuring the TS.MADD ceiling with {backlog} samples in batches of {MADD_BATCH}…");
    let madd_rate = madd_ceiling(&scope, backlog as usize).await;

    println!("| figure | value |");
    println!("|---|---|");
    println!("| backlog (readings) | {backlog} |");
    println!(
        "| simulator publish rate (readings/s) | {:.0} |",
        report.readings_per_second()
    );
    println!(
        "| host: group join, then drain (s) | {:.2} + {drain_secs:.2} |",
        host_secs - drain_secs
    );
    if let Some(secs) = stage_secs {
        println!(
            "| repartition stage, start to caught up (s; readings/s) | {secs:.2}; {:.0} |",
            backlog as f64 / secs
        );
    }
    println!("| host drain (readings/s, raw + aggregates) | {host_rate:.0} |");
    if let Some(secs) = from_assignment_secs {
        println!(
            "| from assignment to caught up (s; readings/s) | {secs:.2}; {:.0} |",
            backlog as f64 / secs
        );
    }
    println!("| TS.MADD ceiling, batches of {MADD_BATCH} (samples/s) | {madd_rate:.0} |");
    println!("| host / ceiling | {:.3} |", host_rate / madd_rate);
    println!(
        "| CPU during the host's run: host, Redis, Kafka (% of one core) | {:.0} %, {:.0} %, {} |",
        100.0 * host_cpu / host_secs,
        100.0 * redis_cpu / host_secs,
        kafka_cpu.map_or("not the local stack's".to_owned(), |c| format!(
            "{:.0} %",
            100.0 * c / host_secs
        ))
    );
    println!("| host peak RSS (MiB, bench process) | {peak_rss_mib:.0} |");
    println!(
        "| checkpoint bytes written (whole checkpoints would be) | {} ({}) |",
        stages.checkpoint_bytes_written, stages.checkpoint_bytes_whole
    );
    println!();
    println!("| stage | side | seconds | share of the run | calls |");
    println!("|---|---|---:|---:|---:|");
    for stage in Stage::ALL {
        println!(
            "| {} | {} | {:.2} | {:.0} % | {} |",
            stage.name(),
            stage.side(),
            stages.seconds(stage),
            100.0 * stages.seconds(stage) / host_secs,
            stages.count(stage)
        );
    }
    let stage_json: serde_json::Map<String, serde_json::Value> = Stage::ALL
        .iter()
        .map(|&stage| (stage.name().to_owned(), stages.seconds(stage).into()))
        .collect();
    println!(
        "{}",
        serde_json::json!({
            "backlog": backlog, "sites": args.sites, "days": args.days, "partitions": args.partitions,
            "host_batch": args.batch, "in_flight": args.in_flight, "host_seconds": host_secs,
            "drain_seconds": drain_secs, "host_readings_per_s": host_rate,
            "from_assignment_seconds": from_assignment_secs,
            "madd_samples_per_s": madd_rate, "ratio": host_rate / madd_rate,
            "outputs_emitted": stats.outputs_emitted, "host_cpu_s": host_cpu,
            "redis_cpu_s": redis_cpu, "kafka_cpu_s": kafka_cpu, "peak_rss_mib": peak_rss_mib,
            "stages_s": stage_json, "through_stage": args.through_stage,
            "checkpoint_bytes_written": stages.checkpoint_bytes_written,
            "checkpoint_bytes_whole": stages.checkpoint_bytes_whole,
            "stage_seconds": stage_secs,
            "stage_readings_per_s": stage_secs.map(|s| backlog as f64 / s),
        })
    );
}

/// Runs `iot-host repartition` over `input` until it caught up; returns its wall time
/// (process start to exit: the group join included).
async fn pass_through_stage(
    scope: &TestScope,
    topics: &SystemTopics,
    input: &str,
    format: Format,
) -> f64 {
    let log = std::env::temp_dir().join(format!("{}-stage.log", scope.id));
    let from = match format {
        Format::Json => input.to_owned(),
        Format::Line => format!("{input}:site={}-default", scope.id),
    };
    let started = Instant::now();
    let stage = StageProcess::start(
        scope,
        &[from],
        &topics.readings,
        &topics.dead_letter,
        &log,
        &["--exit-when-caught-up"],
    );
    let status = stage.wait(Duration::from_secs(1800)).await;
    assert!(status.success(), "the stage failed; see {}", log.display());
    let secs = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&log);
    secs
}

/// The instant the host's first batch was read (its first `accept`).
async fn first_batch_read(before: Breakdown) -> Instant {
    while Breakdown::now().since(&before).count(Stage::Accept) == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Instant::now()
}

/// CPU seconds (user + system) this process used so far.
fn own_cpu_seconds() -> f64 {
    process_cpu_seconds(std::process::id())
}

/// Starts the peak-RSS counter afresh (Linux: `5` to /proc/self/clear_refs).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Writes `samples` samples over 100 series with TS.MADD batches, pipelined like the host
/// does, and returns samples/s. On a cluster the series are in 12 groups of one hash tag
/// each (a TS.MADD may not span slots), spread over the shards and written all at once.
async fn madd_ceiling(scope: &TestScope, samples: usize) -> f64 {
    let groups: usize = match scope.sink {
        Sink::Redis => 1,
        Sink::RedisCluster => 12,
    };
    let started = Instant::now();
    let written = futures_util::future::join_all(
        (0..groups).map(|g| madd_group(scope, g, groups, samples / groups)),
    )
    .await;
    written.iter().sum::<usize>() as f64 / started.elapsed().as_secs_f64()
}

async fn madd_group(scope: &TestScope, group: usize, groups: usize, samples: usize) -> usize {
    let mut conn = scope.redis_conn().await;
    let keys: Vec<String> = (0..100 / groups)
        .map(|i| match scope.sink {
            Sink::Redis => format!("{}madd-ceiling:{i}", scope.key_prefix()),
            Sink::RedisCluster => format!("{}madd-ceiling:{{g{group}}}:{i}", scope.key_prefix()),
        })
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
    written
}
