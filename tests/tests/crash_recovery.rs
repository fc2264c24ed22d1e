//! kill -9 of the host at random instants of a multi-day run, each followed by a restart:
//! RedisTimeSeries ends exactly as the oracle says an uninterrupted run would leave it.
//! The five-crash run also runs the shipped alarm rules: their replayed alarms land on the
//! same keys, so the Alarm series end as the alarm oracle says too.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use iot_simulator::{publish, PublishConfig, SimConfig};
use rand::{Rng, SeedableRng};
use system_tests::alarm_oracle;
use system_tests::fixture::{plugin_dir, LocalService, Sink, TestScope};
use system_tests::harness::SystemTopics;
use system_tests::live_host::LiveHost;
use system_tests::load::Load;
use system_tests::oracle::{self, SentReading};
use system_tests::progress::Progress;
use system_tests::redis_read;
use system_tests::topic::read_all;

/// 2020-01-01T00:00:00Z.
const RUN_START_MS: i64 = 1_577_836_800_000;
const KILLS: usize = 5;
/// Small batches: many commits, so kills land between and inside them.
const HOST_BATCH: &str = "40";
/// How long a started host may take to make its first records durable.
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(300);

/// One test of this file at a time: one of them stalls Redis, which the others would
/// take for an outage.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Paced load for the kill tests: the host is killed while it runs, so however fast the
/// host is, it never runs out of work before the kills are done.
const STEPS_PER_SECOND: f64 = 60.0;

/// A host that exits once it has read everything.
fn start_host(scope: &TestScope, topics: &SystemTopics, log: &std::path::Path) -> LiveHost {
    start_host_with(scope, topics, log, &["--exit-when-caught-up"])
}

fn start_host_with(
    scope: &TestScope,
    topics: &SystemTopics,
    log: &std::path::Path,
    extra: &[&str],
) -> LiveHost {
    let plugins = plugin_dir();
    let mut args = vec![
        "--batch-size",
        HOST_BATCH,
        "--plugins",
        plugins.to_str().unwrap(),
        "--no-watch",
    ];
    args.extend_from_slice(extra);
    LiveHost::start(scope, topics, log, &args)
}

fn fleet(scope: &TestScope, seed: u64) -> SimConfig {
    SimConfig {
        sites: 2,
        seed,
        start_ms: RUN_START_MS,
        days: None,
        site_prefix: format!("{}-s", scope.id),
    }
}

/// Stops the load and runs a host until it has stored everything the load sent; returns
/// what was sent.
async fn drain_after(
    load: Load,
    scope: &TestScope,
    topics: &SystemTopics,
    log: &std::path::Path,
    extra: &[&str],
) -> Vec<SentReading> {
    load.stop().await;
    let sent: Vec<SentReading> = read_all(&scope.services.kafka_bootstrap, &topics.readings)
        .iter()
        .map(|r| oracle::sent_reading(r).unwrap())
        .collect();
    let mut args = vec!["--exit-when-caught-up"];
    args.extend_from_slice(extra);
    let mut host = start_host_with(scope, topics, log, &args);
    let status = tokio::task::spawn_blocking(move || host.wait())
        .await
        .unwrap();
    assert!(
        status.success(),
        "the last run ends cleanly; see {}",
        log.display()
    );
    sent
}

/// The partitions of the readings topic that have records so far.
fn partitions_with_records(scope: &TestScope, topics: &SystemTopics) -> Vec<i32> {
    read_all(&scope.services.kafka_bootstrap, &topics.readings)
        .iter()
        .map(|r| r.partition)
        .collect::<BTreeSet<i32>>()
        .into_iter()
        .collect()
}

/// Every stored series equals the oracle's, and nothing else is stored.
async fn assert_equal_to_oracle(scope: &TestScope, sent: &[SentReading], when: &str) {
    let expected = oracle::expected(sent);
    assert_series_equal(scope, &expected.series, when).await;
}

/// [`assert_equal_to_oracle`] for a host that also ran the shipped alarm rules: their
/// `Alarm` series too.
async fn assert_equal_to_oracle_with_alarms(scope: &TestScope, sent: &[SentReading], when: &str) {
    let mut expected = oracle::expected(sent).series;
    let alarms = alarm_oracle::shipped_alarms(sent);
    assert!(
        alarm_oracle::count(&alarms) > 0,
        "the load must raise alarms for the test to mean something"
    );
    expected.extend(alarm_oracle::as_series(&alarms));
    assert_series_equal(scope, &expected, when).await;
}

async fn assert_series_equal(
    scope: &TestScope,
    expected: &BTreeMap<(String, String, String), oracle::SeriesValues>,
    when: &str,
) {
    let mut conn = scope.redis_conn().await;
    let stored = redis_read::all_series(&mut conn, &scope.key_prefix()).await;
    let mut differences = Vec::new();
    for (series, values) in expected {
        if stored.get(series) != Some(values) {
            differences.push(format!("{series:?}"));
        }
    }
    for series in stored.keys() {
        if !expected.contains_key(series) {
            differences.push(format!("unexpected {series:?}"));
        }
    }
    assert!(
        differences.is_empty(),
        "series differ from the oracle {when}: {differences:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_kill_minus_nine_crashes_leave_redis_exactly_as_the_oracle() {
    five_kill_minus_nine_crashes(Sink::Redis).await;
}

/// On a cluster a batch is not one transaction: a kill can land between its sites' writes
/// and its checkpoint, and the replay must still leave every series exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_redis_cluster_five_kill_minus_nine_crashes_leave_it_exactly_as_the_oracle() {
    five_kill_minus_nine_crashes(Sink::RedisCluster).await;
}

async fn five_kill_minus_nine_crashes(sink: Sink) {
    let _serial = ONE_AT_A_TIME.lock().await;
    const PARTITIONS: i32 = 3;
    let mut scope = TestScope::on("kill_minus_nine_crashes", sink);
    let topics = SystemTopics::create(&mut scope, PARTITIONS).await;
    let mut load = Load::start(
        &scope,
        &topics.readings,
        fleet(&scope, 11),
        STEPS_PER_SECOND,
    );

    let log = std::env::temp_dir().join(format!("{}-host.log", scope.id));
    // The reference pipeline and the shipped alarm rules: replayed alarms must land on the
    // same keys.
    let pipeline = std::env::temp_dir().join(format!("{}-pipeline.toml", scope.id));
    std::fs::write(&pipeline, alarm_oracle::reference_with_shipped_alarms()).unwrap();
    let with_alarms = ["--pipeline", pipeline.to_str().unwrap()];
    let progress = Progress::new(&scope, &topics.readings, PARTITIONS);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xC0FFEE);
    for _ in 0..KILLS {
        let mut host = start_host_with(&scope, &topics, &log, &with_alarms);
        // Kill at a random instant after the host has made some progress.
        progress
            .wait_for_more(
                &mut host,
                Some(&mut load),
                1,
                PROGRESS_TIMEOUT,
                "before a kill",
            )
            .await;
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..150))).await;
        host.assert_running();
        host.kill(); // SIGKILL
    }

    let sent = drain_after(load, &scope, &topics, &log, &with_alarms).await;
    assert_eq!(progress.stored().await, Some(sent.len() as i64));
    assert_equal_to_oracle_with_alarms(&scope, &sent, &format!("after {KILLS} crashes")).await;
    let _ = std::fs::remove_file(&log);
    let _ = std::fs::remove_file(&pipeline);
}

/// A Redis that lost everything (restarted without persistence, or replaced) while the
/// consumer group's offsets stayed in Kafka: a restarted host must not carry on from those
/// offsets as if nothing happened. It says so and rebuilds from the start of the topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_restarted_on_a_redis_that_lost_its_data_rebuilds_from_the_start_of_the_topic() {
    let _serial = ONE_AT_A_TIME.lock().await;
    const PARTITIONS: i32 = 2;
    let mut scope = TestScope::new("redis_lost_its_data");
    let topics = SystemTopics::create(&mut scope, PARTITIONS).await;
    let bootstrap = scope.services.kafka_bootstrap.clone();
    let fleet = SimConfig {
        sites: 2,
        seed: 12,
        start_ms: RUN_START_MS,
        days: Some(3),
        site_prefix: format!("{}-s", scope.id),
    };
    let report = publish(
        PublishConfig::fast(&bootstrap, &topics.readings, fleet),
        Arc::new(AtomicBool::new(false)),
    )
    .await
    .expect("the simulator ran");
    assert!(report.failure.is_none());
    let sent: Vec<SentReading> = read_all(&bootstrap, &topics.readings)
        .iter()
        .map(|r| oracle::sent_reading(r).unwrap())
        .collect();

    let log = std::env::temp_dir().join(format!("{}-host.log", scope.id));
    let run_to_the_end = |what: &'static str| {
        let mut host = start_host(&scope, &topics, &log);
        let log = log.clone();
        async move {
            let status = tokio::task::spawn_blocking(move || host.wait())
                .await
                .unwrap();
            assert!(
                status.success(),
                "the {what} run ends cleanly; see {}",
                log.display()
            );
        }
    };
    run_to_the_end("first").await;
    let mut conn = scope.redis_conn().await;
    let progress = Progress::new(&scope, &topics.readings, PARTITIONS);
    assert_eq!(progress.stored().await, Some(sent.len() as i64));

    // Redis loses everything of this host; Kafka keeps the group's committed offsets.
    scope.delete_keys().await;
    run_to_the_end("second").await;

    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("rebuilding the partition from the start of the topic"),
        "the host said what it found and what it does; see {}",
        log.display()
    );
    let expected = oracle::expected(&sent);
    let stored = redis_read::all_series(&mut conn, &scope.key_prefix()).await;
    assert_eq!(stored.len(), expected.series.len(), "every series is back");
    for (series, values) in &expected.series {
        assert_eq!(
            stored.get(series),
            Some(values),
            "{series:?} rebuilt exactly"
        );
    }
    let _ = std::fs::remove_file(&log);
}

/// Batches the host may fold ahead of Redis in the in-flight test: many, so a kill
/// catches several of them folded but not yet durable.
const IN_FLIGHT: &str = "8";
const IN_FLIGHT_KILLS: usize = 3;
/// What the host logs when its fold side waited `STALL_WARNING` for a free in-flight slot.
const DURABLE_SIDE_STALLED: &str = "the durable side took no batch";

/// Redis stalls (SIGSTOP) until the host has folded its full allowance of batches ahead of
/// it, then the host is killed with all of them in flight: none of them may be half-kept.
/// After the restarts Redis equals the oracle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_minus_nine_with_batches_in_flight_leaves_redis_exactly_as_the_oracle() {
    let _serial = ONE_AT_A_TIME.lock().await;
    if LocalService::Redis.pid().is_none() {
        eprintln!(
            "SKIPPED: it stalls the local stack's Redis, and REDIS_URL points at another one"
        );
        return;
    }
    const PARTITIONS: i32 = 3;
    let mut scope = TestScope::new("kill_with_batches_in_flight");
    let topics = SystemTopics::create(&mut scope, PARTITIONS).await;
    let mut load = Load::start(
        &scope,
        &topics.readings,
        fleet(&scope, 13),
        STEPS_PER_SECOND,
    );

    let log = std::env::temp_dir().join(format!("{}-host.log", scope.id));
    let progress = Progress::new(&scope, &topics.readings, PARTITIONS);
    let in_flight = ["--max-batches-in-flight", IN_FLIGHT];
    for _ in 0..IN_FLIGHT_KILLS {
        let mut host = start_host_with(&scope, &topics, &log, &in_flight);
        // This host holds every partition with readings in memory: no checkpoint read of
        // its own waits for the stalled Redis.
        progress
            .wait_for_more(
                &mut host,
                Some(&mut load),
                1,
                PROGRESS_TIMEOUT,
                "after a start",
            )
            .await;
        let used_partitions = partitions_with_records(&scope, &topics);
        progress
            .wait_until_each_moved(
                &mut host,
                Some(&mut load),
                &used_partitions,
                PROGRESS_TIMEOUT,
            )
            .await;
        let stalls_before = host.log_count(DURABLE_SIDE_STALLED);
        let stalled = LocalService::Redis.pause();
        host.wait_for_log(DURABLE_SIDE_STALLED, stalls_before + 1, PROGRESS_TIMEOUT)
            .await;
        host.kill(); // SIGKILL, with every in-flight slot taken
        drop(stalled);
        load.assert_running().await;
    }

    let sent = drain_after(load, &scope, &topics, &log, &in_flight).await;
    assert_eq!(progress.stored().await, Some(sent.len() as i64));
    assert_equal_to_oracle(
        &scope,
        &sent,
        &format!("after {IN_FLIGHT_KILLS} kills with batches in flight"),
    )
    .await;
    let _ = std::fs::remove_file(&log);
}
