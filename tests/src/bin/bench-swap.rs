//! Hot-swap latency benchmark: the real host binary running live (not exiting when caught
//! up) on fresh topics with a deploy folder of its own, under continuous paced load from
//! the simulator, while `sum.wasm` is swapped N times, alternating between the real `sum`
//! build and the `sum-marked-v1` fixture (same accumulator, `finish` adds 1e6). Swaps are
//! `--interval-ms` apart plus a random part of a simulated day, so they land at random
//! points of the day clock.
//!
//! For each swap it measures, from the `rename` that deploys the build:
//! - until the host's `applied a new build` log line (its timestamp), with the host's own
//!   `built_in_ms` (read + compile + validate) from that line and `visible_after_ms` (first
//!   file event → the first batch on the new build is durable) from `new build live`;
//! - until the first record on the `aggregates` topic of a `sum` output (HVAC1, HVAC2,
//!   MiAC1, MiAC2, W1 `AggDay`) whose value shows the new build (≥ 1e6 after swapping to the
//!   marked build, < 1e6 after swapping back), as received by a consumer started before
//!   the swaps; and until the first such record of an output that gets no late readings
//!   (HVAC1, HVAC2, MiAC1, MiAC2), i.e. the first day closed on the new build.
//!
//! A day's value is only emitted when the day closes (or, for W1, re-emitted when a late W1
//! reading comes, every 20 steps), so the `aggregates` measures include waiting for the next
//! emission: at `--steps-per-second S` a day closes every 96/S seconds.
//!
//! Run it with `scripts/bench-swap` (release builds). Figures go to stdout as tables and as
//! one JSON line for the record.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use iot_simulator::{publish, Pace, PublishConfig, PublishReport, SimConfig};
use rand::{Rng, SeedableRng};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::TopicPartitionList;
use system_tests::fixture::{fixture_plugin, plugin_dir, TestScope};
use system_tests::harness::SystemTopics;
use system_tests::live_host::{HostFiles, LiveHost};
use system_tests::progress::Progress;

/// Outputs the reference pipeline computes with `sum`.
const SUM_OUTPUTS: [&str; 5] = ["HVAC1", "HVAC2", "MiAC1", "MiAC2", "W1"];
/// The only sensor the simulator sends late readings of (its days are re-emitted).
const LATE_SENSOR: &str = "W1";
/// What `sum-marked-v1` adds to every value it finishes.
const MARK: f64 = 1_000_000.0;
const STEPS_PER_DAY: f64 = 96.0;
/// How long one swap may take to be applied and seen before the run gives up.
const SWAP_TIMEOUT: Duration = Duration::from_secs(30);

struct Args {
    swaps: usize,
    sites: u32,
    steps_per_second: f64,
    partitions: i32,
    interval: Duration,
    warmup: Duration,
}

fn args() -> Args {
    let mut args = Args {
        swaps: 10,
        sites: 2,
        steps_per_second: 192.0,
        partitions: 3,
        interval: Duration::from_millis(1000),
        warmup: Duration::from_secs(3),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--swaps" => args.swaps = value().parse().expect("--swaps N"),
            "--sites" => args.sites = value().parse().expect("--sites N"),
            "--steps-per-second" => {
                args.steps_per_second = value().parse().expect("--steps-per-second S")
            }
            "--partitions" => args.partitions = value().parse().expect("--partitions N"),
            "--interval-ms" => {
                args.interval = Duration::from_millis(value().parse().expect("--interval-ms N"))
            }
            "--warmup-s" => {
                args.warmup = Duration::from_secs_f64(value().parse().expect("--warmup-s N"))
            }
            "-h" | "--help" => {
                println!(
                    "bench-swap [--swaps N (10)] [--sites N (2)] [--steps-per-second S (192)] \
                     [--partitions N (3)] [--interval-ms N (1000)] [--warmup-s N (3)]"
                );
                std::process::exit(0);
            }
            other => panic!("unknown flag {other}; see --help"),
        }
    }
    assert!(args.swaps > 0, "--swaps must be at least 1");
    args
}

/// A `sum` output's record on `aggregates`, as the bench's consumer received it.
struct Seen {
    received: Instant,
    sensor: String,
    value: f64,
}

/// Reads `aggregates` from its beginning on a thread of its own and keeps every `sum`
/// output's daily value with the time it arrived.
fn watch_aggregates(
    bootstrap: &str,
    topic: &str,
    stop: Arc<AtomicBool>,
) -> (Arc<Mutex<Vec<Seen>>>, std::thread::JoinHandle<()>) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("bench-swap-{topic}"))
        .set("enable.auto.commit", "false")
        // Hand over each record as soon as it is there, not after fetch.wait.max.ms (500).
        .set("fetch.wait.max.ms", "5")
        .set("fetch.min.bytes", "1")
        .create()
        .expect("Kafka consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("aggregates metadata");
    let mut tpl = TopicPartitionList::new();
    for p in metadata.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), rdkafka::Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).expect("assign aggregates");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let thread = std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let Some(message) = consumer.poll(Duration::from_millis(50)) else {
                continue;
            };
            let received = Instant::now();
            let message = message.expect("reading aggregates");
            let Some(payload) = message.payload() else {
                continue;
            };
            let Ok(json) = serde_json::from_slice::<serde_json::Value>(payload) else {
                continue;
            };
            let sensor = json["sensor"].as_str().unwrap_or_default();
            let is_sum = json["kind"] == "AggDay" && SUM_OUTPUTS.contains(&sensor);
            if let (true, Some(value)) = (is_sum, json["value"].as_f64()) {
                let sensor = sensor.to_owned();
                sink.lock().unwrap().push(Seen {
                    received,
                    sensor,
                    value,
                });
            }
        }
    });
    (seen, thread)
}

/// One deploy and what was measured of it.
struct Swap {
    to_marked: bool,
    renamed_at: SystemTime,
    /// rename → the first `sum` record on `aggregates` that shows the new build.
    to_first_record: Duration,
    /// The output of that record.
    first_sensor: String,
    /// rename → the first such record of an output that gets no late readings: a day close.
    to_day_close: Duration,
    /// readings the host had not yet made durable when the swap was seen.
    lag_after: i64,
}

/// One swap as the host's log tells it.
#[derive(Debug, Default, Clone)]
struct Logged {
    applied_at: Option<SystemTime>,
    built_in_ms: Option<u64>,
    live_at: Option<SystemTime>,
    visible_after_ms: Option<u64>,
}

/// Removes ANSI escape sequences (`ESC [ … letter`): the host colours its log even into a
/// file.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// `name=123` in a log line.
fn field(line: &str, name: &str) -> Option<u64> {
    let at = line.find(&format!("{name}="))? + name.len() + 1;
    let digits: String = line[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// The RFC 3339 timestamp a tracing line starts with.
fn timestamp(line: &str) -> Option<SystemTime> {
    let first = line.split_whitespace().next()?;
    let t = chrono::DateTime::parse_from_rfc3339(first).ok()?;
    let nanos = t.timestamp_nanos_opt()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_nanos(u64::try_from(nanos).ok()?))
}

/// The applied / live lines of the log, in order: the i-th of each belongs to the i-th swap.
fn parse_log(log: &Path) -> Vec<Logged> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let (mut applied, mut live) = (Vec::new(), Vec::new());
    for line in text.lines().map(strip_ansi) {
        if line.contains("applied a new build") {
            applied.push((timestamp(&line), field(&line, "built_in_ms")));
        } else if line.contains("new build live") {
            live.push((timestamp(&line), field(&line, "visible_after_ms")));
        }
    }
    (0..applied.len().max(live.len()))
        .map(|i| Logged {
            applied_at: applied.get(i).and_then(|a| a.0),
            built_in_ms: applied.get(i).and_then(|a| a.1),
            live_at: live.get(i).and_then(|l| l.0),
            visible_after_ms: live.get(i).and_then(|l| l.1),
        })
        .collect()
}

fn since(t: Option<SystemTime>, from: SystemTime) -> Option<f64> {
    t.and_then(|t| t.duration_since(from).ok())
        .map(|d| d.as_secs_f64() * 1000.0)
}

/// Sum of the high watermarks of every partition of `topic`: readings published so far.
fn published(consumer: &BaseConsumer, topic: &str, partitions: i32) -> i64 {
    (0..partitions)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .expect("watermarks")
                .1
        })
        .sum()
}

/// Deploys `component` as `sum.wasm` (copy under a hidden name, then rename) and returns
/// the moment of the rename.
fn deploy_sum(files: &HostFiles, component: &Path) -> (SystemTime, Instant) {
    let tmp = files.plugins().join(".sum.wasm.tmp");
    std::fs::copy(component, &tmp)
        .unwrap_or_else(|e| panic!("cannot copy {}: {e}", component.display()));
    let target = files.plugins().join("sum.wasm");
    let (at, instant) = (SystemTime::now(), Instant::now());
    std::fs::rename(&tmp, target).expect("rename");
    (at, instant)
}

struct Stats {
    min: f64,
    median: f64,
    max: f64,
    n: usize,
}

fn stats(values: impl IntoIterator<Item = f64>) -> Option<Stats> {
    let mut v: Vec<f64> = values.into_iter().collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some(Stats {
        min: v[0],
        median,
        max: v[n - 1],
        n,
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = args();
    let real_sum: PathBuf = plugin_dir().join("sum.wasm");
    assert!(
        real_sum.exists(),
        "{} is missing: run scripts/build-plugins",
        real_sum.display()
    );
    eprintln!("building the swap fixture sum-marked-v1…");
    let marked = fixture_plugin("sum-marked-v1");

    let mut scope = TestScope::new("bench_swap");
    let topics = SystemTopics::create(&mut scope, args.partitions).await;
    let files = HostFiles::reference(&scope);
    let log = std::env::temp_dir().join(format!("{}-host.log", scope.id));
    let bootstrap = scope.services.kafka_bootstrap.clone();

    let stop_watch = Arc::new(AtomicBool::new(false));
    let (seen, watcher) = watch_aggregates(&bootstrap, &topics.aggregates, stop_watch.clone());

    let (plugins, pipeline) = (files.plugins(), files.pipeline());
    let mut host = LiveHost::start(
        &scope,
        &topics,
        &log,
        &[
            "--plugins",
            plugins.to_str().unwrap(),
            "--pipeline",
            pipeline.to_str().unwrap(),
        ],
    );
    host.wait_for_log("host running", 1, SWAP_TIMEOUT).await;

    let stop_sim = Arc::new(AtomicBool::new(false));
    let mut config = PublishConfig::fast(
        &bootstrap,
        &topics.readings,
        SimConfig {
            sites: args.sites,
            seed: 3,
            start_ms: 1_577_836_800_000,
            days: None,
            site_prefix: format!("{}-s", scope.id),
        },
    );
    config.pace = Pace::RealTime {
        steps_per_second: args.steps_per_second,
    };
    let publisher: tokio::task::JoinHandle<PublishReport> = {
        let stop = stop_sim.clone();
        tokio::spawn(async move { publish(config, stop).await.expect("the simulator ran") })
    };
    let day_s = STEPS_PER_DAY / args.steps_per_second;
    eprintln!(
        "load: {} site(s) at {} steps/s (a simulated day closes every {:.2} s); warming up {:?}…",
        args.sites, args.steps_per_second, day_s, args.warmup
    );

    // Warm-up: the first days closed and emitted, the host at its pace.
    let deadline = Instant::now() + SWAP_TIMEOUT;
    while seen.lock().unwrap().is_empty() {
        host.assert_running();
        assert!(
            Instant::now() < deadline,
            "no sum output was emitted in {SWAP_TIMEOUT:?}; see {}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(args.warmup).await;

    let watermarks: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", format!("bench-swap-watermarks-{}", scope.id))
        .create()
        .expect("Kafka consumer");
    let progress = Progress::new(&scope, &topics.readings, args.partitions);
    let progress_start = progress.stored().await.expect("Redis answers");
    let phase_start = Instant::now();

    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut swaps: Vec<Swap> = Vec::with_capacity(args.swaps);
    for i in 0..args.swaps {
        let to_marked = i % 2 == 0;
        let component = if to_marked { &marked } else { &real_sum };
        let already_seen = seen.lock().unwrap().len();
        let (renamed_at, renamed) = deploy_sum(&files, component);
        // Wait for a sum record that shows the new build, and for one from a day close
        // (W1 is also re-emitted for late readings; the other sum outputs never are).
        let deadline = renamed + SWAP_TIMEOUT;
        let ((first, first_sensor), first_close) = loop {
            let (first, close) = {
                let seen = seen.lock().unwrap();
                let mut new_build = seen[already_seen..]
                    .iter()
                    .filter(|s| s.received >= renamed && (s.value >= MARK) == to_marked);
                let first = new_build.clone().next();
                let close = new_build.find(|s| s.sensor != LATE_SENSOR);
                (
                    first.map(|s| (s.received, s.sensor.clone())),
                    close.map(|s| s.received),
                )
            };
            if let (Some(first), Some(close)) = (first, close) {
                break (first, close);
            }
            host.assert_running();
            assert!(
                Instant::now() < deadline,
                "swap {} was not seen on aggregates within {SWAP_TIMEOUT:?}; see {}",
                i + 1,
                log.display()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        host.wait_for_log("new build live", i + 1, SWAP_TIMEOUT)
            .await;
        let lag_after = published(&watermarks, &topics.readings, args.partitions)
            - progress.stored().await.expect("Redis answers");
        swaps.push(Swap {
            to_marked,
            renamed_at,
            to_first_record: first - renamed,
            first_sensor,
            to_day_close: first_close - renamed,
            lag_after,
        });
        eprintln!(
            "swap {:>2} → {:<13} seen on aggregates after {:>4.0} ms",
            i + 1,
            if to_marked { "sum-marked-v1" } else { "sum" },
            (first - renamed).as_secs_f64() * 1000.0
        );
        // A random phase against the day clock: with a fixed interval that is a multiple
        // of the day's period every swap would land at the same point of the day.
        let jitter = Duration::from_secs_f64(rng.random_range(0.0..day_s));
        let next = renamed + args.interval + jitter;
        let now = Instant::now();
        if next > now {
            tokio::time::sleep(next - now).await;
        }
    }
    let phase = phase_start.elapsed().as_secs_f64();
    let progress_end = progress.stored().await.expect("Redis answers");
    let published_end = published(&watermarks, &topics.readings, args.partitions);
    let sustained = (progress_end - progress_start) as f64 / phase;

    // Stop the load, let the host store everything, stop it.
    stop_sim.store(true, Ordering::Relaxed);
    let report = publisher.await.expect("the publisher ran");
    assert!(report.failure.is_none(), "{:?}", report.failure);
    let total = published(&watermarks, &topics.readings, args.partitions);
    progress
        .wait_until(
            &mut host,
            None,
            total,
            Duration::from_secs(600),
            "everything published",
        )
        .await;
    host.stop().await;
    stop_watch.store(true, Ordering::Relaxed);
    watcher.join().expect("the aggregates watcher ran");

    let logged = parse_log(&log);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let refused = text.lines().filter(|l| l.contains("refused")).count();
    assert_eq!(
        logged.len(),
        args.swaps,
        "the host logged {} applied builds for {} swaps; see {}",
        logged.len(),
        args.swaps,
        log.display()
    );

    println!();
    println!("| # | to | rename → applied (ms) | built_in_ms | visible_after_ms | rename → live line (ms) | rename → first new-build record (ms) | its output | rename → first new-build day close (ms) | lag after (readings) |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let fmt = |v: Option<f64>| v.map_or("?".to_owned(), |v| format!("{v:.0}"));
    for (i, (s, l)) in swaps.iter().zip(&logged).enumerate() {
        println!(
            "| {} | {} | {} | {} | {} | {} | {:.0} | {} | {:.0} | {} |",
            i + 1,
            if s.to_marked { "sum-marked-v1" } else { "sum" },
            fmt(since(l.applied_at, s.renamed_at)),
            fmt(l.built_in_ms.map(|v| v as f64)),
            fmt(l.visible_after_ms.map(|v| v as f64)),
            fmt(since(l.live_at, s.renamed_at)),
            s.to_first_record.as_secs_f64() * 1000.0,
            s.first_sensor,
            s.to_day_close.as_secs_f64() * 1000.0,
            s.lag_after,
        );
    }

    let measures: Vec<(&str, &str, Option<Stats>)> = vec![
        (
            "rename_to_applied",
            "rename → `applied a new build` (log timestamp)",
            stats(
                swaps
                    .iter()
                    .zip(&logged)
                    .filter_map(|(s, l)| since(l.applied_at, s.renamed_at)),
            ),
        ),
        (
            "built_in",
            "host `built_in_ms` (read + compile + validate)",
            stats(
                logged
                    .iter()
                    .filter_map(|l| l.built_in_ms.map(|v| v as f64)),
            ),
        ),
        (
            "visible_after",
            "host `visible_after_ms` (first file event → first batch on it durable)",
            stats(
                logged
                    .iter()
                    .filter_map(|l| l.visible_after_ms.map(|v| v as f64)),
            ),
        ),
        (
            "rename_to_live",
            "rename → `new build live` (log timestamp)",
            stats(
                swaps
                    .iter()
                    .zip(&logged)
                    .filter_map(|(s, l)| since(l.live_at, s.renamed_at)),
            ),
        ),
        (
            "rename_to_first_record",
            "rename → first new-build `sum` record on `aggregates`",
            stats(
                swaps
                    .iter()
                    .map(|s| s.to_first_record.as_secs_f64() * 1000.0),
            ),
        ),
        (
            "rename_to_day_close",
            "rename → first new-build day close on `aggregates` (HVAC1/HVAC2/MiAC1/MiAC2)",
            stats(swaps.iter().map(|s| s.to_day_close.as_secs_f64() * 1000.0)),
        ),
    ];
    println!();
    println!(
        "| measure (ms, {} swaps) | min | median | max |",
        args.swaps
    );
    println!("|---|---|---|---|");
    let mut json_measures = serde_json::Map::new();
    for (key, name, s) in &measures {
        if let Some(s) = s {
            println!("| {name} | {:.0} | {:.0} | {:.0} |", s.min, s.median, s.max);
            json_measures.insert(
                (*key).to_owned(),
                serde_json::json!({"min": s.min, "median": s.median, "max": s.max, "n": s.n}),
            );
        } else {
            println!("| {name} | ? | ? | ? |");
        }
    }
    let offered = (published_end - progress_start).max(0) as f64;
    println!();
    println!("| load | value |");
    println!("|---|---|");
    println!(
        "| sites × steps/s | {} × {} |",
        args.sites, args.steps_per_second
    );
    println!("| a simulated day closes every (s) | {day_s:.2} |");
    println!("| readings/s the host made durable during the swaps | {sustained:.0} |");
    println!(
        "| readings/s the simulator sent (whole run) | {:.0} |",
        report.readings_per_second()
    );
    println!(
        "| readings not yet durable at the end of the swaps | {} |",
        published_end - progress_end
    );
    println!("| swap phase (s) | {phase:.1} |");
    println!("| log lines mentioning `refused` | {refused} |");
    println!(
        "{}",
        serde_json::json!({
            "swaps": args.swaps, "sites": args.sites, "steps_per_second": args.steps_per_second,
            "partitions": args.partitions, "interval_ms": args.interval.as_millis() as u64,
            "day_close_every_s": day_s, "host_readings_per_s": sustained,
            "simulator_readings_per_s": report.readings_per_second(),
            "lag_at_end": published_end - progress_end, "offered_during_swaps": offered,
            "measures_ms": json_measures,
        })
    );
    if std::env::var_os("IOT_KEEP_TEST_DATA").is_none() {
        let _ = std::fs::remove_file(&log);
    } else {
        eprintln!("host log kept at {}", log.display());
    }
}
