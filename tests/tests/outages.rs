//! Kafka and Redis going away in the middle of a run (kill -9, then started again), and a
//! Redis that comes back without the host's data. The host never exits, logs one line when
//! an outage starts and one when it ends, rebuilds what the store lost, and RedisTimeSeries
//! ends equal to the oracle.
//!
//! These tests stop the local stack's own services, so they run one at a time and only
//! against the stack `scripts/stack up` started (with KAFKA_BOOTSTRAP or REDIS_URL pointing
//! at services of your own they are skipped, saying so). The stack runs Redis with an
//! append-only file (see `scripts/stack`), so a killed Redis comes back with its data.

use std::time::Duration;

use iot_simulator::SimConfig;
use rand::{Rng, SeedableRng};
use system_tests::fixture::{plugin_dir, start_stack, LocalService, TestScope};
use system_tests::harness::SystemTopics;
use system_tests::live_host::{LiveHost, REFERENCE_PIPELINE};
use system_tests::load::Load;
use system_tests::oracle::{self, SentReading};
use system_tests::progress::Progress;
use system_tests::redis_read;
use system_tests::topic::read_all;

/// 2020-01-01T00:00:00Z.
const RUN_START_MS: i64 = 1_577_836_800_000;
const PARTITIONS: i32 = 3;
const STEPS_PER_SECOND: f64 = 40.0;
const HOST_BATCH: &str = "200";
/// Outages of each service, at random points of the run.
const OUTAGES_EACH: usize = 2;
/// How long a service stays away, at most (chosen at random per outage).
const LONGEST_OUTAGE: Duration = Duration::from_secs(5);
/// Generous: a broker restarted after kill -9 recovers its log and its consumer groups.
const RESUME_TIMEOUT: Duration = Duration::from_secs(300);
/// Records stored after the last event, under load, before the load stops.
const STORED_AFTER: i64 = 2_000;

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn local_stack_or_skip(test: &str) -> bool {
    let local = LocalService::Kafka.pid().is_some() && LocalService::Redis.pid().is_some();
    if !local {
        eprintln!(
            "SKIPPED {test}: it kills and restarts the local stack's Kafka and Redis, and these \
             are not running from .stack (KAFKA_BOOTSTRAP / REDIS_URL point at your own?)"
        );
    }
    local
}

/// A live host on the reference plugins under a load that runs until stopped.
struct Run {
    scope: TestScope,
    topics: SystemTopics,
    host: LiveHost,
    load: Load,
    progress: Progress,
    log: std::path::PathBuf,
}

impl Run {
    async fn start(name: &str, seed: u64) -> Run {
        let mut scope = TestScope::new(name);
        let topics = SystemTopics::create(&mut scope, PARTITIONS).await;
        let log = std::env::temp_dir().join(format!("{}-host.log", scope.id));
        let pipeline = std::env::temp_dir().join(format!("{}-pipeline.toml", scope.id));
        std::fs::write(&pipeline, REFERENCE_PIPELINE).unwrap();
        let plugins = plugin_dir();
        let mut host = LiveHost::start(
            &scope,
            &topics,
            &log,
            &[
                "--plugins",
                plugins.to_str().unwrap(),
                "--pipeline",
                pipeline.to_str().unwrap(),
                "--batch-size",
                HOST_BATCH,
                "--no-watch",
            ],
        );
        host.wait_for_log("host running", 1, RESUME_TIMEOUT).await;
        let fleet = SimConfig {
            sites: 2,
            seed,
            start_ms: RUN_START_MS,
            days: None,
            site_prefix: format!("{}-s", scope.id),
        };
        let load = Load::start(&scope, &topics.readings, fleet, STEPS_PER_SECOND);
        let progress = Progress::new(&scope, &topics.readings, PARTITIONS);
        Run {
            progress,
            scope,
            topics,
            host,
            load,
            log,
        }
    }

    /// Waits until the host has stored `more` records beyond what it had stored when
    /// called (or when Redis first answers), while the load runs.
    async fn wait_for_more_stored(&mut self, more: i64, after: &str) {
        self.progress
            .wait_for_more(
                &mut self.host,
                Some(&mut self.load),
                more,
                RESUME_TIMEOUT,
                after,
            )
            .await;
    }

    /// Stops the load, waits until the host stored every record, stops the host, and
    /// checks every series against the oracle. Returns the host's log.
    async fn finish_exact(mut self) -> String {
        self.wait_for_more_stored(STORED_AFTER, "before the load stops")
            .await;
        self.load.stop().await;
        let sent: Vec<SentReading> =
            read_all(&self.scope.services.kafka_bootstrap, &self.topics.readings)
                .iter()
                .map(|r| oracle::sent_reading(r).expect("the simulator sends JSON readings"))
                .collect();
        let total = sent.len() as i64;
        self.progress
            .wait_until(
                &mut self.host,
                None,
                total,
                RESUME_TIMEOUT,
                "everything the load sent",
            )
            .await;
        self.host.stop().await;
        let expected = oracle::expected(&sent);
        let stored =
            redis_read::all_series(&mut self.scope.redis_conn().await, &self.scope.key_prefix())
                .await;
        let differing: Vec<_> = expected
            .series
            .iter()
            .filter(|(k, v)| stored.get(*k) != Some(*v))
            .map(|(k, _)| k)
            .collect();
        assert!(
            differing.is_empty(),
            "{} of {} series differ from the oracle, e.g. {:?}; see {}",
            differing.len(),
            expected.series.len(),
            differing.first(),
            self.log.display()
        );
        let unexpected: Vec<_> = stored
            .keys()
            .filter(|k| !expected.series.contains_key(*k))
            .collect();
        assert!(
            unexpected.is_empty(),
            "series the oracle does not expect: {unexpected:?}"
        );
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let _ = std::fs::remove_file(&self.log);
        log
    }
}

fn lines_with(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_rides_out_redis_and_kafka_killed_and_restarted_and_ends_equal_to_the_oracle() {
    let _serial = ONE_AT_A_TIME.lock().await;
    if !local_stack_or_skip("outages") {
        return;
    }
    let mut run = Run::start("outages", 61).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x0DD_BA11);
    let services = [LocalService::Redis, LocalService::Kafka];
    for i in 0..2 * OUTAGES_EACH {
        let service = services[i % 2];
        run.wait_for_more_stored(rng.random_range(300..2_000), &format!("before outage {i}"))
            .await;
        service.kill9();
        tokio::time::sleep(LONGEST_OUTAGE.mul_f64(rng.random_range(0.1..1.0))).await;
        start_stack();
        run.wait_for_more_stored(200, &format!("after {service:?} came back (outage {i})"))
            .await;
    }
    let log = run.finish_exact().await;

    // One line when each outage started, one when it ended; none per retry.
    assert_eq!(
        lines_with(&log, "Redis unreachable"),
        OUTAGES_EACH,
        "Redis outages logged once each"
    );
    assert_eq!(
        lines_with(&log, "Redis is back after"),
        OUTAGES_EACH,
        "Redis recoveries logged once each"
    );
    // A broker back from kill -9 can fail a call or two more while its group coordinator
    // loads, each logged as an outage of its own (seen: 5 lines for 2 outages); a line per
    // retry would be dozens.
    let kafka_down = lines_with(&log, "Kafka unreachable");
    assert!(
        (OUTAGES_EACH..=3 * OUTAGES_EACH).contains(&kafka_down),
        "Kafka outages logged about once each: {kafka_down} lines for {OUTAGES_EACH} outages"
    );
    assert_eq!(
        kafka_down,
        lines_with(&log, "Kafka is back after"),
        "every Kafka outage logged as ended"
    );
    let errors: Vec<&str> = log.lines().filter(|l| l.contains(" ERROR ")).collect();
    assert!(
        errors.is_empty(),
        "no ERROR lines: the outages were waited out: {errors:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_comes_back_without_the_hosts_data_is_detected_and_every_partition_rebuilt() {
    let _serial = ONE_AT_A_TIME.lock().await;
    if !local_stack_or_skip("redis_lost_data") {
        return;
    }
    let mut run = Run::start("redis_lost_data", 62).await;
    run.wait_for_more_stored(3_000, "before Redis loses the data")
        .await;
    // Freeze the host, so that nothing it does falls between the loss and the restart;
    // delete everything of this test (as a Redis without persistence would lose it), and
    // restart Redis (with the deletion in its append-only file).
    run.host.pause();
    run.scope.delete_keys().await;
    LocalService::Redis.kill9();
    start_stack();
    run.host.resume();
    run.host
        .wait_for_log("Redis lost data this host had written", 1, RESUME_TIMEOUT)
        .await;
    let log = run.finish_exact().await;
    assert!(
        lines_with(&log, "rebuilding partition") >= 1,
        "the host said which partitions it rebuilds"
    );
}
