//! Several hosts in one consumer group taking one burst of readings: 1, 2, 3… host
//! processes join a group on a fresh, empty topic; once they share its partitions (each
//! holds some, none twice), the simulator publishes the burst as fast as it can, and the
//! time runs from the first reading published to every reading durable. Each run has its
//! own topic and key prefix. Run it with `scripts/bench-hosts` (release build).
//!
//! The hosts join before the burst because a group of one takes every partition at once:
//! started together on a backlog, the first member drains it before the others are in.
//! Every host runs on this machine, beside Kafka, Redis and the simulator: on 2 cores more
//! hosts cannot mean more CPU, so the figures show what a group costs here (per-host
//! overhead, more clients for Kafka and Redis), not what it gains with a machine per host.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use iot_simulator::{publish, PublishConfig, SimConfig};
use system_tests::fixture::plugin_dir;
use system_tests::fixture::{LocalService, Sink, TestScope};
use system_tests::harness::SystemTopics;
use system_tests::live_host::LiveHost;
use system_tests::measure::{process_cpu_seconds, redis_cpu_seconds};
use system_tests::progress::Progress;

/// How long one run may take before the bench gives up, naming what did not happen.
const RUN_DEADLINE: Duration = Duration::from_secs(600);

struct Args {
    sites: u32,
    days: u32,
    partitions: i32,
    hosts: Vec<usize>,
    sinks: Vec<Sink>,
}

fn args() -> Args {
    let mut args = Args {
        sites: 50,
        days: 30,
        partitions: 6,
        hosts: vec![1, 2, 3],
        sinks: vec![Sink::Redis],
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--sites" => args.sites = value().parse().expect("--sites N"),
            "--days" => args.days = value().parse().expect("--days N"),
            "--partitions" => args.partitions = value().parse().expect("--partitions N"),
            "--hosts" => {
                args.hosts = value()
                    .split(',')
                    .map(|n| n.trim().parse().expect("--hosts 1,2,3"))
                    .collect()
            }
            "--sinks" => {
                args.sinks = value()
                    .split(',')
                    .map(|s| match s.trim() {
                        "redis" => Sink::Redis,
                        "cluster" => Sink::RedisCluster,
                        other => panic!("--sinks redis,cluster, not {other}"),
                    })
                    .collect()
            }
            "-h" | "--help" => {
                println!("bench-hosts [--sites N] [--days N] [--partitions N] [--hosts 1,2,3] [--sinks redis,cluster]");
                std::process::exit(0);
            }
            other => panic!("unknown flag {other}; see --help"),
        }
    }
    args
}

struct Outcome {
    sink: Sink,
    hosts: usize,
    backlog: i64,
    /// From the first reading published to the last acknowledged by Kafka.
    published_secs: f64,
    /// From the first reading published to every reading durable.
    seconds: f64,
    host_cpu: f64,
    redis_cpu: f64,
    kafka_cpu: Option<f64>,
    split: Vec<Vec<i32>>,
}

/// Waits until the hosts hold every partition between them, each some and none twice.
async fn wait_for_split(members: &mut [LiveHost], partitions: i32) {
    let started = Instant::now();
    loop {
        let held: Vec<Vec<i32>> = members.iter().map(LiveHost::assigned).collect();
        let mut all: Vec<i32> = held.iter().flatten().copied().collect();
        all.sort_unstable();
        if held.iter().all(|h| !h.is_empty()) && all == (0..partitions).collect::<Vec<_>>() {
            return;
        }
        for member in members.iter_mut() {
            member.assert_running();
        }
        assert!(
            started.elapsed() < RUN_DEADLINE,
            "the hosts did not share the partitions within {RUN_DEADLINE:?} (they hold {held:?})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn run(args: &Args, sink: Sink, hosts: usize) -> Outcome {
    let mut scope = TestScope::on("bench_hosts", sink);
    let topics = SystemTopics::create(&mut scope, args.partitions).await;
    let fleet = SimConfig {
        sites: args.sites,
        seed: 1,
        start_ms: 1_577_836_800_000,
        days: Some(args.days),
        site_prefix: format!("{}-s", scope.id),
    };
    let plugins = plugin_dir();
    let mut members: Vec<LiveHost> = (0..hosts)
        .map(|i| {
            let log = std::env::temp_dir().join(format!("{}-host{i}.log", scope.id));
            LiveHost::start_member(
                &scope,
                &topics,
                &log,
                None,
                &["--plugins", plugins.to_str().unwrap(), "--no-watch"],
            )
        })
        .collect();
    wait_for_split(&mut members, args.partitions).await;
    eprintln!("{hosts} host(s) share the partitions; publishing the burst…");

    let progress = Progress::new(&scope, &topics.readings, args.partitions);
    let mut redis = scope.redis_conn().await;
    let kafka_pid = LocalService::Kafka.pid();
    let redis_before = redis_cpu_seconds(&mut redis).await;
    let kafka_before = kafka_pid.map(process_cpu_seconds);
    let hosts_before: f64 = members.iter().map(|m| process_cpu_seconds(m.pid())).sum();
    let started = Instant::now();
    let publishing = PublishConfig::fast(&scope.services.kafka_bootstrap, &topics.readings, fleet);
    let report = publish(publishing, Arc::new(AtomicBool::new(false)))
        .await
        .expect("the simulator ran");
    let published_secs = started.elapsed().as_secs_f64();
    let backlog = report.acknowledged as i64;
    loop {
        if progress.stored().await.is_some_and(|n| n >= backlog) {
            break;
        }
        for member in &mut members {
            member.assert_running();
        }
        assert!(
            started.elapsed() < RUN_DEADLINE,
            "{hosts} host(s) did not make the burst of {backlog} durable within {RUN_DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let host_cpu = members
        .iter()
        .map(|m| process_cpu_seconds(m.pid()))
        .sum::<f64>()
        - hosts_before;
    let redis_cpu = redis_cpu_seconds(&mut redis).await - redis_before;
    let kafka_cpu = kafka_pid
        .map(process_cpu_seconds)
        .zip(kafka_before)
        .map(|(after, before)| after - before);
    let split = members.iter().map(LiveHost::assigned).collect();
    for member in members {
        let log = member.log.clone();
        member.stop().await;
        let _ = std::fs::remove_file(log);
    }
    Outcome {
        sink,
        hosts,
        backlog,
        published_secs,
        seconds,
        host_cpu,
        redis_cpu,
        kafka_cpu,
        split,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = args();
    let mut outcomes = Vec::new();
    for &sink in &args.sinks {
        for &hosts in &args.hosts {
            outcomes.push(run(&args, sink, hosts).await);
        }
    }
    println!(
        "| Redis | hosts | readings | published in s | first published → all durable, s | readings/s | CPU s: hosts, Redis, Kafka | partitions per host |"
    );
    println!("|---|---:|---:|---:|---:|---:|---|---|");
    for o in &outcomes {
        println!(
            "| {} | {} | {} | {:.2} | {:.2} | {:.0} | {:.2}, {:.2}, {} | {:?} |",
            sink_name(o.sink),
            o.hosts,
            o.backlog,
            o.published_secs,
            o.seconds,
            o.backlog as f64 / o.seconds,
            o.host_cpu,
            o.redis_cpu,
            o.kafka_cpu.map_or("-".to_owned(), |k| format!("{k:.2}")),
            o.split
        );
    }
    for o in &outcomes {
        println!(
            "{}",
            serde_json::json!({
                "bench": "hosts", "redis": sink_name(o.sink), "hosts": o.hosts, "backlog": o.backlog, "seconds": o.seconds,
                "published_seconds": o.published_secs,
                "readings_per_s": o.backlog as f64 / o.seconds, "host_cpu_s": o.host_cpu,
                "redis_cpu_s": o.redis_cpu, "kafka_cpu_s": o.kafka_cpu, "split": o.split,
            })
        );
    }
}

fn sink_name(sink: Sink) -> &'static str {
    match sink {
        Sink::Redis => "single",
        Sink::RedisCluster => "cluster (3 masters)",
    }
}
