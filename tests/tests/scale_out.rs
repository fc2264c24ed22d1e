//! Several host processes in one consumer group sharing a 6-partition `readings` topic, on
//! real Kafka and Redis, under a paced load:
//!
//! - the partitions are spread over the hosts, and each host's log and metrics
//!   (`iot_partition_owned`) say which it holds;
//! - kill -9 of a host at random instants: the survivor takes its partitions from their
//!   checkpoints (after the killed member's session timeout);
//! - a second and a third host joining take partitions (three processes share the topic);
//!   a host stopped with Ctrl-C leaves the group at once, so the other two take its
//!   partitions long before its session timeout;
//! - at the end RedisTimeSeries equals the oracle of what was sent;
//! - a host frozen (SIGSTOP) past its session timeout with batches in flight writes none of
//!   them once it wakes: another host took its partitions over, and the store fences it.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use iot_simulator::SimConfig;
use rand::{Rng, SeedableRng};
use system_tests::fixture::{pause_sink, plugin_dir, Sink, TestScope};
use system_tests::harness::SystemTopics;
use system_tests::live_host::LiveHost;
use system_tests::load::Load;
use system_tests::metrics_scrape::partitions_at;
use system_tests::oracle::{self, SentReading};
use system_tests::progress::Progress;
use system_tests::redis_read;
use system_tests::topic::read_all;
use system_tests::webdriver::free_port;

/// 2020-01-01T00:00:00Z.
const RUN_START_MS: i64 = 1_577_836_800_000;
const PARTITIONS: i32 = 6;
/// Sites of the load: enough that most partitions have some.
const SITES: u32 = 12;
const STEPS_PER_SECOND: f64 = 30.0;
/// Hosts killed (one at a time, each replaced by a new member).
const KILLS: usize = 3;
/// The killed members' session timeout: how long the group waits before their partitions
/// move (the broker's minimum is 6 s).
const SHORT_SESSION: &str = "6s";
/// The session timeout of the host stopped with Ctrl-C: its partitions must move long
/// before this, because a stopped host leaves the group instead of going silent.
const LONG_SESSION: Duration = Duration::from_secs(90);
/// Deadline for a rebalance to give a host the partitions it should have.
const REBALANCE_DEADLINE: Duration = Duration::from_secs(180);

/// One test of this file at a time: one of them stalls Redis, which the other would take
/// for an outage.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
/// The host's warning while its Redis writes are stalled and its in-flight slots fill.
const DURABLE_SIDE_STALLED: &str = "the durable side took no batch";
/// The host's warning when the store refused a batch for partitions another host took.
const FENCED: &str = "were taken over by another host";
/// The host's last line on Ctrl-C: its in-flight batches are durable and committed.
const LAST_BATCH_STORED: &str = "the last batch is stored and its offsets committed";
/// Logged once per partition a host takes over, when it has read its checkpoint.
const RESTORED: &str = "partition restored";

fn fleet(scope: &TestScope) -> SimConfig {
    SimConfig {
        sites: SITES,
        seed: 21,
        start_ms: RUN_START_MS,
        days: None,
        site_prefix: format!("{}-s", scope.id),
    }
}

fn log_of(scope: &TestScope, member: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{}-{member}.log", scope.id))
}

/// A dynamic member of the test's host group (it leaves the group when stopped).
fn member(scope: &TestScope, topics: &SystemTopics, name: &str, session: &str) -> LiveHost {
    let plugins = plugin_dir();
    LiveHost::start_member(
        scope,
        topics,
        &log_of(scope, name),
        None,
        &[
            "--batch-size",
            "200",
            "--plugins",
            plugins.to_str().unwrap(),
            "--no-watch",
            "--session-timeout",
            session,
            "--http",
            &format!("127.0.0.1:{}", free_port()),
        ],
    )
}

/// What each host holds, if the hosts hold every partition between them, each at least one
/// and no partition twice, and each host's metrics (`iot_partition_owned`) say what its log
/// says.
fn split(hosts: &[&mut LiveHost]) -> Option<Vec<Vec<i32>>> {
    let held: Vec<Vec<i32>> = hosts.iter().map(|h| h.assigned()).collect();
    let all: Vec<i32> = held.iter().flatten().copied().collect();
    let distinct: BTreeSet<i32> = all.iter().copied().collect();
    let shared = held.iter().all(|h| !h.is_empty())
        && all.len() == distinct.len()
        && distinct == (0..PARTITIONS).collect();
    let metrics_agree = || {
        hosts.iter().zip(&held).all(|(host, its)| {
            host.metrics()
                .is_some_and(|m| partitions_at(&m, "iot_partition_owned", 1.0) == *its)
        })
    };
    (shared && metrics_agree()).then_some(held)
}

/// Waits until the hosts share every partition (see [`split`]); returns what each holds.
async fn wait_for_split(hosts: &mut [&mut LiveHost], load: &mut Load, what: &str) -> Vec<Vec<i32>> {
    let until = Instant::now() + REBALANCE_DEADLINE;
    loop {
        if let Some(held) = split(hosts) {
            return held;
        }
        for host in hosts.iter_mut() {
            host.assert_running();
        }
        load.assert_running().await;
        let held: Vec<Vec<i32>> = hosts.iter().map(|h| h.assigned()).collect();
        assert!(
            Instant::now() < until,
            "{what}: the hosts did not share the partitions within {REBALANCE_DEADLINE:?} \
             (they hold {held:?}); see {:?}",
            hosts.iter().map(|h| h.log.clone()).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The partitions of `held` that hold readings, once every site of the load has sent at
/// least one: from then on no partition gets its first reading (each site has one
/// partition), so a host holding `held` has nothing left to restore later. Read too early
/// (the load just started), a partition could get its first reading after the test
/// paused Redis, and its host would stall restoring it instead of writing batches.
async fn with_records(
    scope: &TestScope,
    topics: &SystemTopics,
    held: &[i32],
    load: &mut Load,
) -> Vec<i32> {
    let sites = fleet(scope).sites as usize;
    let until = Instant::now() + REBALANCE_DEADLINE;
    loop {
        let records = read_all(&scope.services.kafka_bootstrap, &topics.readings);
        let seen: BTreeSet<&str> = records.iter().filter_map(|r| r.key.as_deref()).collect();
        if seen.len() >= sites {
            let with_records: BTreeSet<i32> = records.iter().map(|r| r.partition).collect();
            return held
                .iter()
                .copied()
                .filter(|p| with_records.contains(p))
                .collect();
        }
        load.assert_running().await;
        assert!(
            Instant::now() < until,
            "the load did not send a reading of each of its {sites} sites within {REBALANCE_DEADLINE:?} (seen {})",
            seen.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_in_one_group_share_partitions_survive_kills_and_hand_over_on_ctrl_c() {
    hosts_in_one_group(Sink::Redis).await;
}

/// The same on a 3-master Redis Cluster: the partitions' checkpoints and the sites' series
/// are on different shards, and a killed host's partitions still end exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_redis_cluster_hosts_in_one_group_survive_kills_and_hand_over_on_ctrl_c() {
    hosts_in_one_group(Sink::RedisCluster).await;
}

async fn hosts_in_one_group(sink: Sink) {
    let _serial = ONE_AT_A_TIME.lock().await;
    let mut scope = TestScope::on("hosts_in_one_group", sink);
    let topics = SystemTopics::create(&mut scope, PARTITIONS).await;
    let progress = Progress::new(&scope, &topics.readings, PARTITIONS);
    let mut load = Load::start(&scope, &topics.readings, fleet(&scope), STEPS_PER_SECOND);
    let long_session = format!("{}s", LONG_SESSION.as_secs());
    let mut survivor = member(&scope, &topics, "a", &long_session);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x6A7E);

    for kill in 1..=KILLS {
        let name = format!("b{kill}");
        let mut doomed = member(&scope, &topics, &name, SHORT_SESSION);
        let held = wait_for_split(&mut [&mut survivor, &mut doomed], &mut load, &name).await;
        // Kill it once it made its own partitions' records durable, at a random instant.
        let its = with_records(&scope, &topics, &held[1], &mut load).await;
        progress
            .wait_until_each_moved(&mut doomed, Some(&mut load), &its, REBALANCE_DEADLINE)
            .await;
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..400))).await;
        doomed.kill();
        // The survivor takes them over from their checkpoints and goes on.
        let all: Vec<i32> = (0..PARTITIONS).collect();
        let until = Instant::now() + REBALANCE_DEADLINE;
        while survivor.assigned() != all {
            survivor.assert_running();
            assert!(
                Instant::now() < until,
                "kill {kill}: the survivor did not take every partition within \
                 {REBALANCE_DEADLINE:?}; see {}",
                survivor.log.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        progress
            .wait_until_each_moved(&mut survivor, Some(&mut load), &its, REBALANCE_DEADLINE)
            .await;
    }

    // Two more hosts join, one after the other: the partitions spread over three processes,
    // and the third moves the records of the partitions it took.
    let mut second = member(&scope, &topics, "c", SHORT_SESSION);
    wait_for_split(&mut [&mut survivor, &mut second], &mut load, "c joining").await;
    let mut third = member(&scope, &topics, "d", SHORT_SESSION);
    let held = wait_for_split(
        &mut [&mut survivor, &mut second, &mut third],
        &mut load,
        "d joining as the third host",
    )
    .await;
    let its = with_records(&scope, &topics, &held[2], &mut load).await;
    progress
        .wait_until_each_moved(&mut third, Some(&mut load), &its, REBALANCE_DEADLINE)
        .await;

    // The first host is stopped with Ctrl-C: it leaves the group, so the two others share
    // its partitions long before its (long) session timeout.
    let stopped = Instant::now();
    let stopped_log = survivor.log.clone();
    survivor.stop().await;
    let said = std::fs::read_to_string(&stopped_log).unwrap_or_default();
    assert!(
        said.contains(LAST_BATCH_STORED),
        "the host stopped with Ctrl-C did not say it stored its last batch; see {}",
        stopped_log.display()
    );
    let mut remaining = [&mut second, &mut third];
    while split(&remaining).is_none() {
        for host in remaining.iter_mut() {
            host.assert_running();
        }
        assert!(
            stopped.elapsed() < LONG_SESSION,
            "the stopped host's partitions did not move within its session timeout: it did \
             not leave the group; see {:?}",
            remaining.iter().map(|h| h.log.clone()).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let moved_after = stopped.elapsed();
    assert!(
        moved_after < LONG_SESSION / 2,
        "the partitions moved {moved_after:?} after Ctrl-C: about the session timeout, so the \
         stopped host did not leave the group"
    );

    // Everything sent ends stored exactly once, as the oracle says.
    load.stop().await;
    let sent: Vec<SentReading> = read_all(&scope.services.kafka_bootstrap, &topics.readings)
        .iter()
        .map(|r| oracle::sent_reading(r).expect("a JSON reading"))
        .collect();
    progress
        .wait_until(
            &mut second,
            None,
            sent.len() as i64,
            REBALANCE_DEADLINE,
            "everything the load sent",
        )
        .await;
    third.assert_running();
    second.stop().await;
    third.stop().await;
    let expected = oracle::expected(&sent);
    let mut conn = scope.redis_conn().await;
    let stored = redis_read::all_series(&mut conn, &scope.key_prefix()).await;
    oracle::assert_stored_equals(&stored, &expected, "at the end");
}

/// Waits until `host` holds every partition.
async fn wait_to_hold_all(host: &mut LiveHost, load: &mut Load, what: &str) {
    let all: Vec<i32> = (0..PARTITIONS).collect();
    let until = Instant::now() + REBALANCE_DEADLINE;
    while host.assigned() != all {
        host.assert_running();
        load.assert_running().await;
        assert!(
            Instant::now() < until,
            "{what}: the host did not get every partition within {REBALANCE_DEADLINE:?}; see {}",
            host.log.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_frozen_past_its_session_timeout_writes_nothing_for_partitions_it_lost() {
    frozen_host_is_fenced(Sink::Redis).await;
}

/// On a cluster the fence is per site and per checkpoint (README, "Redis Cluster").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_redis_cluster_a_host_frozen_past_its_session_timeout_cannot_spoil_what_it_lost() {
    frozen_host_is_fenced(Sink::RedisCluster).await;
}

async fn frozen_host_is_fenced(sink: Sink) {
    let _serial = ONE_AT_A_TIME.lock().await;
    let mut scope = TestScope::on("frozen_host_is_fenced", sink);
    let topics = SystemTopics::create(&mut scope, PARTITIONS).await;
    let progress = Progress::new(&scope, &topics.readings, PARTITIONS);
    let mut load = Load::start(&scope, &topics.readings, fleet(&scope), STEPS_PER_SECOND);
    let mut owner = member(&scope, &topics, "owner", SHORT_SESSION);
    let mut zombie = member(&scope, &topics, "zombie", SHORT_SESSION);
    let held = wait_for_split(&mut [&mut owner, &mut zombie], &mut load, "start").await;
    let its = with_records(&scope, &topics, &held[1], &mut load).await;
    // The zombie has read the checkpoints of its partitions with records (pausing Redis
    // before that would stall the reading, not the batches) and written batches of them.
    zombie
        .wait_for_log(RESTORED, its.len(), REBALANCE_DEADLINE)
        .await;
    progress
        .wait_until_each_moved(&mut zombie, Some(&mut load), &its, REBALANCE_DEADLINE)
        .await;

    // Redis stalls until the zombie's in-flight slots are full; then the zombie freezes.
    let stalled = pause_sink(sink);
    zombie
        .wait_for_log(DURABLE_SIDE_STALLED, 1, REBALANCE_DEADLINE)
        .await;
    zombie.pause();
    drop(stalled);
    // Its session times out; the other host takes its partitions over and moves them on.
    wait_to_hold_all(&mut owner, &mut load, "zombie frozen").await;
    progress
        .wait_until_each_moved(&mut owner, Some(&mut load), &its, REBALANCE_DEADLINE)
        .await;

    // It wakes with its batches still queued: the store refuses them.
    zombie.resume();
    zombie.wait_for_log(FENCED, 1, REBALANCE_DEADLINE).await;
    wait_for_split(&mut [&mut owner, &mut zombie], &mut load, "zombie back").await;

    load.stop().await;
    let sent: Vec<SentReading> = read_all(&scope.services.kafka_bootstrap, &topics.readings)
        .iter()
        .map(|r| oracle::sent_reading(r).expect("a JSON reading"))
        .collect();
    progress
        .wait_until(
            &mut owner,
            None,
            sent.len() as i64,
            REBALANCE_DEADLINE,
            "everything sent",
        )
        .await;
    zombie.stop().await;
    owner.stop().await;
    let expected = oracle::expected(&sent);
    let mut conn = scope.redis_conn().await;
    let stored = redis_read::all_series(&mut conn, &scope.key_prefix()).await;
    oracle::assert_stored_equals(&stored, &expected, "at the end");
}
