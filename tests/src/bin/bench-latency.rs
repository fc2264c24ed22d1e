//! Publish→visible latency: how long after a reading is handed to Kafka its value can be
//! read back from RedisTimeSeries, with the real host (release binary, a process of its
//! own) under a paced simulator load, at each rate given, with and without a CPU-heavy
//! neighbour process on the machine.
//!
//! Probes are readings of a site of their own (`<scope>-probe`, sensor TH1, value = the
//! probe's number, timestamps 15 minutes apart so each is on time). Each is sent while the
//! load runs, then `TS.GET` is polled every millisecond until the probe's value is the
//! series' last one. Probes are sent one at a time, `--every` apart.
//!
//! Run it with `scripts/bench-latency` (release build). Prints a table and one JSON line
//! per run; also counts the host's group rebalances and outage lines during each run.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use iot_simulator::SimConfig;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use system_tests::fixture::{plugin_dir, LocalService, TestScope};
use system_tests::harness::SystemTopics;
use system_tests::live_host::LiveHost;
use system_tests::load::Load;
use system_tests::repartition::StageProcess;

/// 2020-01-01T00:00:00Z: the load's first step.
const RUN_START_MS: i64 = 1_577_836_800_000;
const STEP_MS: i64 = 15 * 60 * 1000;
/// Readings per site and 15-minute step of the simulator, on average (measured on a
/// 50-site × 30-day backlog: 1,032,173 readings over 144,000 site-steps).
const READINGS_PER_SITE_STEP: f64 = 7.17;
const PARTITIONS: i32 = 6;
/// How long one probe may take to become visible before it counts as lost.
const PROBE_TIMEOUT: Duration = Duration::from_secs(120);

struct Args {
    rates: Vec<f64>,
    sites: u32,
    probes: usize,
    every: Duration,
    neighbour: bool,
    /// Stop the broker (SIGSTOP) this long once half the probes are sent.
    broker_stall: Option<Duration>,
    /// Passed to the host as `--session-timeout`.
    session_timeout: Option<String>,
    /// Load and probes go to a topic of their own, which `iot-host repartition` copies to
    /// `readings`: the latency then includes the stage.
    through_stage: bool,
    /// The stage's `--commit-interval`.
    stage_commit_interval: String,
}

fn args() -> Args {
    let mut args = Args {
        rates: vec![5_000.0, 50_000.0],
        sites: 50,
        probes: 200,
        every: Duration::from_millis(50),
        neighbour: false,
        broker_stall: None,
        session_timeout: None,
        through_stage: false,
        stage_commit_interval: "100ms".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--rates" => {
                args.rates = value()
                    .split(',')
                    .map(|r| r.parse().expect("--rates N,N (readings/s)"))
                    .collect()
            }
            "--sites" => args.sites = value().parse().expect("--sites N"),
            "--probes" => args.probes = value().parse().expect("--probes N"),
            "--every" => args.every = Duration::from_millis(value().parse().expect("--every MS")),
            "--neighbour" => args.neighbour = true,
            "--broker-stall" => {
                args.broker_stall = Some(Duration::from_secs(
                    value().parse().expect("--broker-stall SECONDS"),
                ))
            }
            "--session-timeout" => args.session_timeout = Some(value()),
            "--through-stage" => args.through_stage = true,
            "--stage-commit-interval" => args.stage_commit_interval = value(),
            "-h" | "--help" => {
                println!(
                    "bench-latency [--rates 5000,50000] [--sites N] [--probes N] [--every MS] [--neighbour] [--broker-stall S] [--session-timeout 30s] [--through-stage [--stage-commit-interval 100ms]]"
                );
                std::process::exit(0);
            }
            other => panic!("unknown flag {other}; see --help"),
        }
    }
    args
}

/// A CPU-heavy process beside the system (a shell spinning), killed when dropped.
struct Neighbour(Child);

impl Neighbour {
    fn start() -> Neighbour {
        Neighbour(
            Command::new("sh")
                .args(["-c", "while :; do :; done"])
                .spawn()
                .expect("sh starts"),
        )
    }
}

impl Drop for Neighbour {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Outcome {
    rate: f64,
    achieved: f64,
    latencies_ms: Vec<f64>,
    lost: usize,
    rebalances: usize,
    outages: usize,
    /// Checkpoint bytes the host wrote, and what whole checkpoints would have been.
    checkpoint_bytes: Option<(u64, u64)>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

async fn run(args: &Args, rate: f64) -> Outcome {
    let mut scope = TestScope::new("bench_latency");
    let topics = SystemTopics::create(&mut scope, PARTITIONS).await;
    let log = std::env::temp_dir().join(format!("{}-host.log", scope.id));
    let plugins = plugin_dir();
    let mut host_args = vec!["--plugins", plugins.to_str().unwrap(), "--no-watch"];
    if let Some(timeout) = &args.session_timeout {
        host_args.extend(["--session-timeout", timeout.as_str()]);
    }
    let mut host = LiveHost::start(&scope, &topics, &log, &host_args);
    host.wait_for_log("partitions assigned", 1, Duration::from_secs(120))
        .await;

    // With the stage, producers write to a topic of their own and the stage copies it.
    let (input, _stage) = if args.through_stage {
        let input = scope.create_topic("producer", PARTITIONS).await;
        let stage_log = std::env::temp_dir().join(format!("{}-stage.log", scope.id));
        let mut stage = StageProcess::start(
            &scope,
            std::slice::from_ref(&input),
            &topics.readings,
            &topics.dead_letter,
            &stage_log,
            &["--commit-interval", &args.stage_commit_interval],
        );
        stage
            .wait_for_log("repartition assigned", 1, Duration::from_secs(120))
            .await;
        (input, Some(stage))
    } else {
        (topics.readings.clone(), None)
    };
    let steps_per_second = rate / (args.sites as f64 * READINGS_PER_SITE_STEP);
    let fleet = SimConfig {
        sites: args.sites,
        seed: 3,
        start_ms: RUN_START_MS,
        days: None,
        site_prefix: format!("{}-s", scope.id),
    };
    let load = Load::start(&scope, &input, fleet, steps_per_second);
    // Let the load and the host settle into their pace before probing.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &scope.services.kafka_bootstrap)
        .set("linger.ms", "0")
        .create()
        .expect("probe producer");
    let site = format!("{}-probe", scope.id);
    let key = format!("{}{site}:TH1:raw", scope.key_prefix());
    let mut redis = scope.redis_conn().await;
    let mut latencies_ms = Vec::with_capacity(args.probes);
    let mut lost = 0;
    let mut stall = None;
    for k in 0..args.probes {
        if k == args.probes / 2 {
            if let Some(duration) = args.broker_stall {
                // Stopped from a task of its own: probes go on being sent (and wait).
                stall = Some(tokio::spawn(async move {
                    let paused = LocalService::Kafka.pause();
                    tokio::time::sleep(duration).await;
                    drop(paused);
                }));
            }
        }
        let ts = RUN_START_MS + (k as i64 + 1) * STEP_MS;
        let value = k as f64 + 0.5;
        let payload = serde_json::json!({
            "site": site, "sensor": "TH1",
            "ts": iot_protocol::time::format_ts(ts), "value": value,
        })
        .to_string();
        let sent = Instant::now();
        producer
            .send(
                FutureRecord::to(&input).key(&site).payload(&payload),
                Duration::from_secs(30),
            )
            .await
            .expect("the probe was acknowledged");
        loop {
            let last: Option<(i64, f64)> = redis::cmd("TS.GET")
                .arg(&key)
                .query_async(&mut redis)
                .await
                .unwrap_or(None);
            if last == Some((ts, value)) {
                latencies_ms.push(sent.elapsed().as_secs_f64() * 1000.0);
                break;
            }
            if sent.elapsed() > PROBE_TIMEOUT {
                lost += 1;
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let next = sent + args.every;
        tokio::time::sleep_until(next.into()).await;
    }
    if let Some(stall) = stall {
        stall.await.expect("the broker stall ended");
    }
    let report = load.stop().await;
    host.stop().await;
    // The first assignment is the host's start; every later one is a rebalance.
    let rebalances = host_log_count(&log, "partitions assigned").saturating_sub(1);
    let outages = host_log_count(&log, "unreachable");
    let checkpoint_bytes = last_checkpoint_bytes(&log);
    let _ = std::fs::remove_file(&log);
    latencies_ms.sort_by(f64::total_cmp);
    Outcome {
        rate,
        achieved: report.readings_per_second(),
        latencies_ms,
        lost,
        rebalances,
        outages,
        checkpoint_bytes,
    }
}

/// The host's last progress line's `checkpoint_bytes=WRITTEN/WHOLE`.
fn last_checkpoint_bytes(log: &std::path::Path) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(log).ok()?;
    let field = text
        .lines()
        .rev()
        .find_map(|l| l.split("checkpoint_bytes=").nth(1))?;
    let (written, whole) = field.split_whitespace().next()?.split_once('/')?;
    let digits =
        |s: &str| -> Option<u64> { s.trim_matches(|c: char| !c.is_ascii_digit()).parse().ok() };
    Some((digits(written)?, digits(whole)?))
}

fn host_log_count(log: &std::path::Path, needle: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = args();
    let _neighbour = args.neighbour.then(Neighbour::start);
    let mut outcomes = Vec::new();
    for &rate in &args.rates {
        eprintln!("probing at {rate} readings/s…");
        outcomes.push(run(&args, rate).await);
    }
    println!(
        "| target readings/s | achieved | neighbour | stage | probes | p50 ms | p90 ms | p99 ms | max ms | lost | rebalances | outage lines | checkpoint bytes written / whole |"
    );
    println!("|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for o in &outcomes {
        let l = &o.latencies_ms;
        println!(
            "| {:.0} | {:.0} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} | {} | {} |",
            o.rate,
            o.achieved,
            match (args.neighbour, args.broker_stall) {
                (true, Some(s)) => format!("yes, broker stalled {} s", s.as_secs()),
                (false, Some(s)) => format!("broker stalled {} s", s.as_secs()),
                (true, None) => "yes".to_owned(),
                (false, None) => "no".to_owned(),
            },
            if args.through_stage { "yes" } else { "no" },
            l.len(),
            percentile(l, 50.0),
            percentile(l, 90.0),
            percentile(l, 99.0),
            l.last().copied().unwrap_or(f64::NAN),
            o.lost,
            o.rebalances,
            o.outages,
            o.checkpoint_bytes
                .map_or("-".to_owned(), |(w, f)| format!("{w} / {f}"))
        );
    }
    for o in &outcomes {
        let l = &o.latencies_ms;
        println!(
            "{}",
            serde_json::json!({
                "bench": "latency", "rate": o.rate, "achieved": o.achieved,
                "neighbour": args.neighbour, "probes": l.len(), "lost": o.lost,
                "broker_stall_s": args.broker_stall.map(|d| d.as_secs()),
                "session_timeout": args.session_timeout, "through_stage": args.through_stage,
                "stage_commit_interval": args.through_stage.then_some(&args.stage_commit_interval),
                "p50_ms": percentile(l, 50.0), "p90_ms": percentile(l, 90.0),
                "p99_ms": percentile(l, 99.0), "max_ms": l.last(),
                "rebalances": o.rebalances, "outage_lines": o.outages,
                "checkpoint_bytes": o.checkpoint_bytes,
            })
        );
    }
}
