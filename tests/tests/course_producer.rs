//! The original course project's producer (`iot-simulator --layout course`: plain lines
//! stamped at the start of their interval, a partition per sensor type, the 10-days-late
//! readings on a topic of their own), on real Kafka and RedisTimeSeries:
//!
//! - read directly, its split sites are reported (dead-letter `split-site`), never folded;
//! - through the repartition stage and `--stamps interval-start`, every stored series equals
//!   the oracle, and equals the same lines sent to one partition;
//! - kill -9 of the stage at random instants loses and duplicates nothing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use iot_host::engine::EngineConfig;
use iot_host::runner::RunOptions;
use iot_protocol::time::StampConvention;
use iot_simulator::publisher::encode;
use iot_simulator::{publish, Format, Generator, Layout, PublishConfig, SimConfig, SimReading};
use rand::{Rng, SeedableRng};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use system_tests::fixture::TestScope;
use system_tests::harness::{engine_config, run_host_configured, SystemTopics};
use system_tests::load::Load;
use system_tests::oracle::{self, SentReading, Stamping, ALLOWED_LATENESS_MS};
use system_tests::redis_read;
use system_tests::repartition::StageProcess;
use system_tests::topic::{read_all, TopicRecord};

/// 2020-01-01T00:00:00Z, the simulated run's step 0.
const RUN_START_MS: i64 = 1_577_836_800_000;
/// 11 days: about the 1,000 steps, with ten midnights for the meters.
const DAYS: u32 = 11;
const COURSE_PARTITIONS: i32 = 6;
const READINGS_PARTITIONS: i32 = 6;
/// The site the course producer's lines are filed under (they carry none).
const SITE: &str = "b1";
/// How long the stage may take to drain a run on a slow machine.
const STAGE_DEADLINE: Duration = Duration::from_secs(600);
/// kill -9 of the stage during the fault test.
const KILLS: usize = 10;
/// Pace of the load during the fault test (simulated steps per second).
const LOAD_STEPS_PER_SECOND: f64 = 40.0;

fn course_run(days: Option<u32>) -> SimConfig {
    SimConfig {
        sites: 1,
        seed: 11,
        start_ms: RUN_START_MS,
        days,
        site_prefix: "course".into(),
    }
}

/// The course topics of a test: `<id>.course` (a partition per sensor type) and
/// `<id>.course-late` (the name the course layout gives its late topic).
async fn course_topics(scope: &mut TestScope) -> (String, String) {
    let course = scope.create_topic("course", COURSE_PARTITIONS).await;
    let late = scope.create_topic("course-late", 1).await;
    assert_eq!(late, iot_simulator::publisher::late_topic(&course));
    (course, late)
}

async fn publish_course(scope: &TestScope, topic: &str) -> u64 {
    let mut config = PublishConfig::fast(
        &scope.services.kafka_bootstrap,
        topic,
        course_run(Some(DAYS)),
    );
    config.layout = Layout::Course;
    let report = publish(config, Arc::new(AtomicBool::new(false)))
        .await
        .expect("the simulator ran");
    assert!(
        report.failure.is_none(),
        "simulator failed: {:?}",
        report.failure
    );
    report.acknowledged
}

/// The course producer's lines in the order it sends them, with the readings they stand
/// for (site `SITE`): what one partition would hold.
fn course_lines() -> Vec<(String, SentReading)> {
    let mut generator = Generator::new(course_run(Some(DAYS))).expect("generator");
    let mut step: Vec<SimReading> = Vec::new();
    let mut lines = Vec::new();
    while generator.next_step_into(&mut step).is_some() {
        for r in &step {
            let stamped = SimReading {
                ts_ms: Layout::Course.route(r).ts_ms,
                ..*r
            };
            let mut line = String::new();
            encode(&generator, &stamped, Format::Line, &mut line);
            let reading = SentReading {
                site: SITE.into(),
                sensor: r.sensor.name().into(),
                ts_ms: stamped.ts_ms,
                value: r.value,
            };
            lines.push((line, reading));
        }
    }
    lines
}

fn stage_inputs(course: &str, late: &str) -> Vec<String> {
    vec![
        format!("{course}:site={SITE}"),
        format!("{late}:site={SITE}"),
    ]
}

fn stage_log(scope: &TestScope) -> PathBuf {
    std::env::temp_dir().join(format!("{}-stage.log", scope.id))
}

fn interval_start_config(scope: &TestScope, topics: &SystemTopics) -> EngineConfig {
    EngineConfig {
        default_site: SITE.into(),
        stamps: StampConvention::IntervalStart,
        ..engine_config(scope, topics)
    }
}

async fn stored_series(
    scope: &TestScope,
) -> BTreeMap<(String, String, String), oracle::SeriesValues> {
    let mut conn = scope.redis_conn().await;
    redis_read::all_series(&mut conn, &scope.key_prefix()).await
}

async fn produce_in_order(bootstrap: &str, topic: &str, lines: &[String]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .create()
        .expect("producer");
    let mut sends = Vec::with_capacity(lines.len());
    for line in lines {
        let record = FutureRecord::<str, str>::to(topic)
            .partition(0)
            .payload(line);
        match producer.send_result(record) {
            Ok(send) => sends.push(send),
            Err((e, _)) => panic!("line not queued: {e}"),
        }
    }
    for send in sends {
        send.await
            .expect("delivery report")
            .map_err(|(e, _)| e)
            .expect("line delivered");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_course_layout_read_directly_is_reported_as_split_site_never_folded() {
    let mut scope = TestScope::new("course_layout_read_directly");
    let topics = SystemTopics::create(&mut scope, COURSE_PARTITIONS).await;
    scope.create_topic("readings-late", 1).await;
    let sent = publish_course(&scope, &topics.readings).await;

    let config = EngineConfig {
        default_site: SITE.into(),
        ..engine_config(&scope, &topics)
    };
    let stats = run_host_configured(&scope, &topics, config, RunOptions::default(), &mut ()).await;
    let split = stats.dead_letters.get("split-site").copied().unwrap_or(0);
    assert!(split > 0, "the split site was not reported: {stats:?}");

    // Every reading of the site's later partitions is dead-lettered with the reason, the
    // topic and both partitions; none of them is stored.
    let dead: Vec<serde_json::Value> =
        read_all(&scope.services.kafka_bootstrap, &topics.dead_letter)
            .iter()
            .map(TopicRecord::json)
            .collect();
    let split_records: Vec<&serde_json::Value> = dead
        .iter()
        .filter(|d| d["reason"] == "split-site")
        .collect();
    assert_eq!(split_records.len() as u64, split);
    for d in &split_records {
        assert_eq!(d["topic"], topics.readings.as_str());
        let detail = d["detail"].as_str().expect("a detail");
        assert!(
            detail.contains(SITE) && detail.contains("partition"),
            "{detail}"
        );
    }
    let stored = stored_series(&scope).await;
    let stored_inputs: usize = stored
        .iter()
        .filter(|((_, _, kind), _)| ["raw", "LateAccepted", "LateRej"].contains(&kind.as_str()))
        .map(|(_, values)| values.len())
        .sum();
    // Only the site's first partition is stored (two readings may share a timestamp in a
    // raw series, so at most).
    assert!(
        stored_inputs as u64 <= sent - split,
        "{stored_inputs} stored inputs, but only {} readings were not split",
        sent - split
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_course_layout_through_the_stage_equals_the_oracle_and_one_partition() {
    let lines = course_lines();
    let readings: Vec<SentReading> = lines.iter().map(|(_, r)| r.clone()).collect();
    let expected =
        oracle::expected_stamped(&readings, ALLOWED_LATENESS_MS, Stamping::IntervalStart);

    // Through the stage: the course layout, two bad lines among them.
    let mut scope = TestScope::new("course_layout_through_the_stage");
    let topics = SystemTopics::create(&mut scope, READINGS_PARTITIONS).await;
    let (course, late) = course_topics(&mut scope).await;
    let bootstrap = scope.services.kafka_bootstrap.clone();
    let sent = publish_course(&scope, &course).await;
    assert_eq!(
        sent,
        lines.len() as u64,
        "the simulator sent the generated lines"
    );
    let bad = [
        "XYZ 2020-01-02 00:00:00 1".to_owned(),
        "TH1 not-a-time 2".to_owned(),
    ];
    produce_in_order(&bootstrap, &course, &bad).await;

    let stage = StageProcess::start(
        &scope,
        &stage_inputs(&course, &late),
        &topics.readings,
        &topics.dead_letter,
        &stage_log(&scope),
        &["--exit-when-caught-up"],
    );
    let log = stage.log.clone();
    assert!(
        stage.wait(STAGE_DEADLINE).await.success(),
        "the stage failed; see {}",
        log.display()
    );

    let dead: Vec<serde_json::Value> = read_all(&bootstrap, &topics.dead_letter)
        .iter()
        .map(TopicRecord::json)
        .collect();
    assert_eq!(
        dead.len(),
        bad.len(),
        "each bad line is dead-lettered once: {dead:?}"
    );
    for d in &dead {
        assert_eq!(d["topic"], course.as_str());
        assert_eq!(d["stage"], "repartition");
    }

    let stats = run_host_configured(
        &scope,
        &topics,
        interval_start_config(&scope, &topics),
        RunOptions::default(),
        &mut (),
    )
    .await;
    assert_eq!(stats.records, lines.len() as u64);
    assert_eq!(stats.dead_letter_total(), 0);
    let through_stage = stored_series(&scope).await;
    oracle::assert_stored_equals(&through_stage, &expected, "through the stage");

    // Every day but the last has a daily difference of both meters (the producer's meters
    // land at 23:45; the last day has no next reading to close it).
    for meter in ["Etot", "Wtot"] {
        let diffs = &through_stage[&(SITE.to_owned(), meter.to_owned(), "AggDayDiff".to_owned())];
        assert_eq!(diffs.len(), DAYS as usize - 1, "{meter}: {diffs:?}");
        assert!(
            diffs.keys().all(|ts| ts % oracle::DAY_MS == 0),
            "stored at midnights"
        );
    }

    // The same lines, in the order the producer sent them, on one partition read directly.
    let mut single = TestScope::new("course_lines_on_one_partition");
    let single_topics = SystemTopics::create(&mut single, 1).await;
    let plain: Vec<String> = lines.iter().map(|(l, _)| l.clone()).collect();
    produce_in_order(&bootstrap, &single_topics.readings, &plain).await;
    run_host_configured(
        &single,
        &single_topics,
        interval_start_config(&single, &single_topics),
        RunOptions::default(),
        &mut (),
    )
    .await;
    let on_one_partition = stored_series(&single).await;
    oracle::assert_stored_equals(&on_one_partition, &expected, "on one partition");
    assert_eq!(on_one_partition, through_stage);
}

/// The output offsets of the readings topic, summed: grows with every record the stage
/// writes (committed or not).
fn written(bootstrap: &str, topic: &str) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("consumer");
    (0..READINGS_PARTITIONS)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .expect("watermarks")
                .1
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_minus_nine_of_the_stage_loses_and_duplicates_no_reading() {
    let mut scope = TestScope::new("stage_kill_minus_nine");
    let topics = SystemTopics::create(&mut scope, READINGS_PARTITIONS).await;
    let (course, late) = course_topics(&mut scope).await;
    let bootstrap = scope.services.kafka_bootstrap.clone();
    let mut config = PublishConfig::fast(&bootstrap, &course, course_run(None));
    config.layout = Layout::Course;
    let mut load = Load::start_with(config, LOAD_STEPS_PER_SECOND);

    // Small transactions, so kills land inside them as well as between them.
    let flags = [
        "--instance-id",
        "stage-1",
        "--session-timeout",
        "10s",
        "--commit-interval",
        "30ms",
        "--max-records-per-transaction",
        "200",
    ];
    let inputs = stage_inputs(&course, &late);
    let log = stage_log(&scope);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5EED);
    for kill in 1..=KILLS {
        let mut stage = StageProcess::start(
            &scope,
            &inputs,
            &topics.readings,
            &topics.dead_letter,
            &log,
            &flags,
        );
        stage
            .wait_for_log("repartition producer ready", kill, Duration::from_secs(120))
            .await;
        // Kill only once this instance wrote something, at a random instant after that.
        let before = written(&bootstrap, &topics.readings);
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while written(&bootstrap, &topics.readings) == before {
            load.assert_running().await;
            assert!(
                std::time::Instant::now() < deadline,
                "stage run {kill} wrote nothing within 2 minutes; see {}",
                log.display()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..300))).await;
        stage.kill();
    }
    let report = load.stop().await;

    let last = StageProcess::start(
        &scope,
        &inputs,
        &topics.readings,
        &topics.dead_letter,
        &log,
        &[&flags[..], &["--exit-when-caught-up"]].concat(),
    );
    assert!(
        last.wait(STAGE_DEADLINE).await.success(),
        "the stage failed; see {}",
        log.display()
    );

    // Exactly once: every input record is in `readings` once (read_committed), by origin.
    let mut inputs_sent: HashSet<String> = HashSet::new();
    for topic in [&course, &late] {
        for r in read_all(&bootstrap, topic) {
            inputs_sent.insert(format!("{topic}:{}:{}", r.partition, r.offset));
        }
    }
    assert_eq!(inputs_sent.len() as u64, report.acknowledged);
    let output = read_all(&bootstrap, &topics.readings);
    let mut seen: HashMap<String, usize> = HashMap::new();
    for r in &output {
        let origin = r.json()["origin"].as_str().expect("an origin").to_owned();
        *seen.entry(origin).or_default() += 1;
    }
    let twice: Vec<&String> = seen
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(o, _)| o)
        .collect();
    assert!(twice.is_empty(), "written more than once: {twice:?}");
    let missing: Vec<&String> = inputs_sent
        .iter()
        .filter(|o| !seen.contains_key(*o))
        .collect();
    assert!(
        missing.is_empty(),
        "{} inputs never written, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    assert_eq!(seen.len(), inputs_sent.len());

    // Redis equals the oracle of what `readings` holds, in its order.
    let sent: Vec<SentReading> = output
        .iter()
        .map(|r| oracle::sent_reading(r).expect("a JSON reading"))
        .collect();
    let stats = run_host_configured(
        &scope,
        &topics,
        interval_start_config(&scope, &topics),
        RunOptions::default(),
        &mut (),
    )
    .await;
    assert_eq!(stats.records, sent.len() as u64);
    let expected = oracle::expected_stamped(&sent, ALLOWED_LATENESS_MS, Stamping::IntervalStart);
    oracle::assert_stored_equals(&stored_series(&scope).await, &expected, "after the kills");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stage_instances_in_one_group_share_the_inputs_and_write_each_line_once() {
    let mut scope = TestScope::new("two_stage_instances");
    let topics = SystemTopics::create(&mut scope, READINGS_PARTITIONS).await;
    let (course, late) = course_topics(&mut scope).await;
    let bootstrap = scope.services.kafka_bootstrap.clone();
    let mut config = PublishConfig::fast(&bootstrap, &course, course_run(None));
    config.layout = Layout::Course;
    let mut load = Load::start_with(config, LOAD_STEPS_PER_SECOND);

    let inputs = stage_inputs(&course, &late);
    let logs: Vec<PathBuf> = ["one", "two"]
        .iter()
        .map(|n| std::env::temp_dir().join(format!("{}-stage-{n}.log", scope.id)))
        .collect();
    let start = |name: &str, log: &PathBuf| {
        StageProcess::start(
            &scope,
            &inputs,
            &topics.readings,
            &topics.dead_letter,
            log,
            &["--instance-id", name, "--session-timeout", "10s"],
        )
    };
    // The second joins while the first is writing: the rebalance revokes the first one's
    // partitions with a transaction open, which it aborts.
    let mut first = start("one", &logs[0]);
    first
        .wait_for_log("repartition producer ready", 1, Duration::from_secs(120))
        .await;
    let before = written(&bootstrap, &topics.readings);
    let until = std::time::Instant::now() + Duration::from_secs(120);
    while written(&bootstrap, &topics.readings) == before {
        load.assert_running().await;
        assert!(
            std::time::Instant::now() < until,
            "the first stage wrote nothing; see {logs:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut stages = vec![first, start("two", &logs[1])];
    // Both hold input partitions at the same time, none twice, all seven between them.
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    loop {
        let held: Vec<Vec<String>> = stages.iter().map(StageProcess::assigned).collect();
        let all: HashSet<&String> = held.iter().flatten().collect();
        let total: usize = held.iter().map(Vec::len).sum();
        if held.iter().all(|h| !h.is_empty())
            && all.len() == total
            && total == COURSE_PARTITIONS as usize + 1
        {
            break;
        }
        load.assert_running().await;
        for stage in &mut stages {
            stage.assert_running();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the two stages did not share the inputs within 3 minutes ({held:?}); see {logs:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let written_while_sharing = written(&bootstrap, &topics.readings);
    let until = std::time::Instant::now() + Duration::from_secs(180);
    while written(&bootstrap, &topics.readings) <= written_while_sharing + 500 {
        load.assert_running().await;
        assert!(
            std::time::Instant::now() < until,
            "the stages stopped writing; see {logs:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let report = load.stop().await;

    // Every line reaches `readings` once, whichever instance copied it.
    let until = std::time::Instant::now() + STAGE_DEADLINE;
    let output = loop {
        let output = read_all(&bootstrap, &topics.readings);
        if output.len() as u64 >= report.acknowledged {
            break output;
        }
        assert!(
            std::time::Instant::now() < until,
            "only {} of {} lines reached readings; see {logs:?}",
            output.len(),
            report.acknowledged
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for stage in stages {
        assert!(stage.stop(Duration::from_secs(120)).await.success());
    }
    let mut origins: HashSet<String> = HashSet::new();
    for r in &output {
        let origin = r.json()["origin"].as_str().expect("an origin").to_owned();
        assert!(origins.insert(origin.clone()), "{origin} written twice");
    }
    assert_eq!(origins.len() as u64, report.acknowledged);
}
