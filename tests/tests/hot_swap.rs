//! Hot swap on a running host under continuous load (SPEC §6): new plugin builds and
//! pipeline edits are deployed into the host's folders while the simulator publishes, and
//! what ends up in RedisTimeSeries is checked against the oracle, reading by reading.
//!
//! The swap fixtures finish a window with a marker added to the true value: `sum-marked-v1`
//! (same accumulator as `sum`, state version 1) adds 1e6, `sum-marked-v2` (another layout,
//! state version 2) adds 2e6. A stored daily value is therefore the oracle's exact value plus
//! the marker of the build that finished it: a reading lost or counted twice across the swap
//! would show as any other difference.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use iot_simulator::SimConfig;
use system_tests::fixture::{fixture_plugin, other_language_plugin, plugin_dir, Sink, TestScope};
use system_tests::harness::SystemTopics;
use system_tests::live_host::{HostFiles, LiveHost, REFERENCE_PIPELINE};
use system_tests::load::Load;
use system_tests::oracle::{self, Expected, SentReading, SeriesValues};
use system_tests::progress::Progress;
use system_tests::redis_read;
use system_tests::topic::read_all;

/// 2020-01-01T00:00:00Z.
const RUN_START_MS: i64 = 1_577_836_800_000;
const PARTITIONS: i32 = 3;
/// Outputs the reference pipeline computes with `sum`.
const SUM_OUTPUTS: [&str; 5] = ["HVAC1", "HVAC2", "MiAC1", "MiAC2", "W1"];
const MARK_V1: f64 = 1_000_000.0;
const MARK_V2: f64 = 2_000_000.0;
/// Small batches: many batch boundaries, so a swap lands between two of them mid-stream.
const HOST_BATCH: &str = "50";
/// Paced publishing: about 2,600 readings a second for two sites. The load runs until the
/// test has seen what it waits for (see [`Load`]), however long that takes.
const STEPS_PER_SECOND: f64 = 120.0;
/// Records stored before a deploy: more than a day of both sites (about 2,100 records a
/// day), so every output has stored days before it.
const FIRST_DAYS_STORED: i64 = 3_000;
/// Records stored after the last event (a swap, a restart) before the load stops: a few
/// days, so the new build finishes days of its own, under load.
const DAYS_STORED_AFTER: i64 = 6_000;
/// Generous: a plugin build of the debug host on a busy two-core machine takes seconds; the
/// load keeps running while the test waits, so a slow machine only makes the run longer.
const EVENT_TIMEOUT: Duration = Duration::from_secs(300);
/// Generous: draining what the load published after it stopped.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(600);

type Key = (String, String, String);

fn fleet(scope: &TestScope) -> SimConfig {
    SimConfig {
        sites: 2,
        seed: 5,
        start_ms: RUN_START_MS,
        days: None,
        site_prefix: format!("{}-s", scope.id),
    }
}

fn sent(scope: &TestScope, topics: &SystemTopics) -> Vec<SentReading> {
    read_all(&scope.services.kafka_bootstrap, &topics.readings)
        .iter()
        .map(|r| oracle::sent_reading(r).expect("the simulator sends JSON readings"))
        .collect()
}

/// Every series in `expected` except `skip` is stored exactly.
fn assert_exact_except(
    expected: &Expected,
    stored: &BTreeMap<Key, SeriesValues>,
    skip: impl Fn(&Key) -> bool,
) {
    let differing: Vec<&Key> = expected
        .series
        .iter()
        .filter(|(k, _)| !skip(k))
        .filter(|(k, v)| stored.get(*k) != Some(*v))
        .map(|(k, _)| k)
        .collect();
    if let Some(first) = differing
        .iter()
        .find(|k| k.2 == "raw")
        .or(differing.first())
    {
        let want = &expected.series[*first];
        let got = stored.get(*first).cloned().unwrap_or_default();
        let diff = want.iter().find(|(d, v)| got.get(d) != Some(v));
        panic!(
            "{} series differ from the oracle: {differing:?}; the first has {} values stored, {} expected; first difference {diff:?}, stored {:?}",
            differing.len(),
            got.len(),
            want.len(),
            diff.and_then(|(d, _)| got.get(d))
        );
    }
}

/// For each day of a series: the stored value minus the oracle's, which must be one of
/// `marks` exactly. Returns the marks in day order.
fn marks_by_day(
    expected: &SeriesValues,
    stored: &SeriesValues,
    marks: &[f64],
    what: &Key,
) -> Vec<f64> {
    assert_eq!(
        expected.keys().collect::<Vec<_>>(),
        stored.keys().collect::<Vec<_>>(),
        "{what:?}: the days stored are not the days the oracle expects"
    );
    expected
        .iter()
        .map(|(day, &value)| {
            let got = stored[day];
            *marks
                .iter()
                .find(|&&m| value + m == got)
                .unwrap_or_else(|| panic!("{what:?} day {day}: stored {got}, oracle {value}: no build finishes it that way (marks {marks:?})"))
        })
        .collect()
}

fn is_sum_output(k: &Key) -> bool {
    k.2 == "AggDay" && SUM_OUTPUTS.contains(&k.1.as_str())
}

/// The rest outputs are computed from the sum outputs' values, markers included.
fn is_rest_output(k: &Key) -> bool {
    k.2 == "AggDayRest"
}

/// A live host on a deploy folder with the reference plugins and pipeline, under paced load
/// from the simulator, with the first readings already stored: the moment to deploy.
struct UnderLoad {
    scope: TestScope,
    topics: SystemTopics,
    files: HostFiles,
    log: PathBuf,
    /// Flags added to the host's (e.g. `--wasi deterministic`).
    host_args: Vec<&'static str>,
    host: Option<LiveHost>,
    conn: iot_host::store::RedisReader,
    progress: Progress,
    load: Load,
    /// One run under load at a time: parallel runs on a small machine would starve each
    /// other's host.
    _serial: tokio::sync::MutexGuard<'static, ()>,
}

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

impl UnderLoad {
    async fn start(name: &str) -> UnderLoad {
        UnderLoad::start_with(name, &[]).await
    }

    async fn start_with(name: &str, host_args: &[&'static str]) -> UnderLoad {
        UnderLoad::start_on(name, host_args, Sink::Redis).await
    }

    async fn start_on(name: &str, host_args: &[&'static str], sink: Sink) -> UnderLoad {
        let serial = ONE_AT_A_TIME.lock().await;
        // Build the fixture plugins now, not while the load runs.
        fixture_plugin("sum-marked-v1");
        let mut scope = TestScope::on(name, sink);
        let topics = SystemTopics::create(&mut scope, PARTITIONS).await;
        let files = HostFiles::reference(&scope);
        let log = std::env::temp_dir().join(format!("{}-host.log", scope.id));
        let conn = scope.redis_conn().await;
        let progress = Progress::new(&scope, &topics.readings, PARTITIONS);
        let load = Load::start(&scope, &topics.readings, fleet(&scope), STEPS_PER_SECOND);
        let mut run = UnderLoad {
            scope,
            topics,
            files,
            log,
            host_args: host_args.to_vec(),
            host: None,
            conn,
            progress,
            load,
            _serial: serial,
        };
        run.start_host().await;
        let host = run.host.as_mut().expect("the host runs");
        run.progress
            .wait_until(
                host,
                Some(&mut run.load),
                FIRST_DAYS_STORED,
                EVENT_TIMEOUT,
                "the first days, before a deploy",
            )
            .await;
        run
    }

    /// Waits, under load, until `more` records beyond now are stored.
    async fn wait_for_more_stored(&mut self, more: i64, what: &str) {
        let host = self.host.as_mut().expect("the host runs");
        self.progress
            .wait_for_more(host, Some(&mut self.load), more, EVENT_TIMEOUT, what)
            .await;
    }

    async fn start_host(&mut self) {
        let (plugins, pipeline) = (self.files.plugins(), self.files.pipeline());
        let mut args = vec![
            "--plugins",
            plugins.to_str().unwrap(),
            "--pipeline",
            pipeline.to_str().unwrap(),
            "--batch-size",
            HOST_BATCH,
        ];
        args.extend(&self.host_args);
        let mut host = LiveHost::start(&self.scope, &self.topics, &self.log, &args);
        host.wait_for_log("host running", 1, EVENT_TIMEOUT).await;
        self.host = Some(host);
    }

    fn host(&mut self) -> &mut LiveHost {
        self.host.as_mut().expect("the host runs")
    }

    /// Waits for the host to log its `count`-th applied build; the load runs on meanwhile.
    async fn wait_applied(&mut self, count: usize) {
        self.host()
            .wait_for_log("applied a new build", count, EVENT_TIMEOUT)
            .await;
        self.load.assert_running().await;
    }

    /// kill -9 once `more` records were stored after now, then a restart; the load runs on.
    async fn crash_and_restart_after(&mut self, more: i64) {
        self.wait_for_more_stored(more, "before a kill").await;
        self.host.take().expect("the host runs").kill();
        self.start_host().await;
    }

    /// Lets the host store a few more days under load, stops the load, waits until the host
    /// stored all of it, stops the host, and returns what was sent and what Redis holds.
    async fn finish(mut self) -> Finished {
        self.wait_for_more_stored(DAYS_STORED_AFTER, "after the last event")
            .await;
        let mut host = self.host.take().expect("the host runs");
        self.load.stop().await;
        let sent = sent(&self.scope, &self.topics);
        self.progress
            .wait_until(
                &mut host,
                None,
                sent.len() as i64,
                DRAIN_TIMEOUT,
                "everything the load sent",
            )
            .await;
        host.stop().await;
        let stored = redis_read::all_series(&mut self.conn, &self.scope.key_prefix()).await;
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let _ = std::fs::remove_file(&self.log);
        Finished {
            expected: oracle::expected(&sent),
            sent,
            stored,
            log,
            _scope: self.scope,
        }
    }
}

/// The end of a run under load.
struct Finished {
    sent: Vec<SentReading>,
    expected: Expected,
    stored: BTreeMap<Key, SeriesValues>,
    log: String,
    /// Dropped last: deletes the test's topics and keys.
    _scope: TestScope,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swap_with_the_same_state_version_carries_open_windows_over_under_load() {
    let mut run = UnderLoad::start("swap_same_state").await;
    run.files.deploy("sum", &fixture_plugin("sum-marked-v1"));
    run.wait_applied(1).await;
    let end = run.finish().await;

    assert_exact_except(&end.expected, &end.stored, |k| {
        is_sum_output(k) || is_rest_output(k)
    });
    let mut before_and_after = (0, 0);
    for (key, values) in end.expected.series.iter().filter(|(k, _)| is_sum_output(k)) {
        for mark in marks_by_day(values, &end.stored[key], &[0.0, MARK_V1], key) {
            if mark == 0.0 {
                before_and_after.0 += 1
            } else {
                before_and_after.1 += 1
            }
        }
    }
    assert!(
        before_and_after.0 > 0 && before_and_after.1 > 0,
        "both builds finished days (old, new): {before_and_after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swap_with_a_new_state_version_finishes_open_windows_on_the_old_build_even_across_a_crash()
{
    swap_with_a_new_state_version_across_a_crash(Sink::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_redis_cluster_a_swap_with_a_new_state_version_finishes_old_windows_across_a_crash() {
    swap_with_a_new_state_version_across_a_crash(Sink::RedisCluster).await;
}

async fn swap_with_a_new_state_version_across_a_crash(sink: Sink) {
    let mut run = UnderLoad::start_on("swap_new_state", &[], sink).await;
    run.files.deploy("sum", &fixture_plugin("sum-marked-v2"));
    run.wait_applied(1).await;
    // Crash while windows of the old build are still open: the restart must find that
    // build in the archive to finish them.
    run.crash_and_restart_after(300).await;
    let end = run.finish().await;
    assert!(
        !end.log.contains("not in the archive"),
        "every build was archived"
    );

    assert_exact_except(&end.expected, &end.stored, |k| {
        is_sum_output(k) || is_rest_output(k)
    });
    let mut old_days = 0;
    for (key, values) in end.expected.series.iter().filter(|(k, _)| is_sum_output(k)) {
        let marks = marks_by_day(values, &end.stored[key], &[0.0, MARK_V2], key);
        // Windows opened before the swap are finished by the old build, later ones by the
        // new build: per series, a run of old days then a run of new days.
        let first_new = marks
            .iter()
            .position(|&m| m == MARK_V2)
            .unwrap_or(marks.len());
        assert!(
            marks[first_new..].iter().all(|&m| m == MARK_V2),
            "{key:?}: an old-build day after a new-build day: {marks:?}"
        );
        assert!(
            first_new < marks.len(),
            "{key:?}: the new build finished no day"
        );
        old_days += first_new;
    }
    assert!(old_days > 0, "the old build finished no day");
}

/// The reference pipeline with `TH1sum` added, `TH2:AggDay` removed and `W1:AggDay`
/// redefined (mean instead of sum).
fn edited_pipeline() -> String {
    let mut text = String::new();
    for block in REFERENCE_PIPELINE.split("\n[[output]]\n").skip(1) {
        let block = block.trim();
        if block.starts_with("name = \"TH2\"") && block.contains("kind = \"AggDay\"") {
            continue;
        }
        let block = if block.starts_with("name = \"W1\"") && block.contains("kind = \"AggDay\"") {
            block.replace("plugin = \"sum\"", "plugin = \"mean\"")
        } else {
            block.to_owned()
        };
        text.push_str("[[output]]\n");
        text.push_str(&block);
        text.push_str("\n\n");
    }
    text.push_str("[[output]]\nname = \"TH1sum\"\nkind = \"AggDay\"\nplugin = \"sum\"\ninputs = [\"TH1\"]\nunit = \"degC\"\n");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_edits_add_remove_and_redefine_outputs_live() {
    let mut run = UnderLoad::start("pipeline_edits").await;
    run.files.write_pipeline(&edited_pipeline());
    run.wait_applied(1).await;
    let Finished {
        sent,
        expected,
        stored,
        ..
    } = run.finish().await;

    let touched = |k: &Key| {
        (k.2 == "AggDay" && ["TH2", "W1", "TH1sum"].contains(&k.1.as_str()))
            || (k.1 == "Wtot" && k.2 == "AggDayRest") // computed from W1:AggDay
    };
    // Unchanged outputs kept their windows across the edit: exact.
    assert_exact_except(&expected, &stored, touched);

    for site in sites(&expected) {
        let key = |sensor: &str| (site.clone(), sensor.to_owned(), "AggDay".to_owned());
        // Removed: the days before the edit, exact; none after.
        let th2_expected = &expected.series[&key("TH2")];
        let th2 = stored.get(&key("TH2")).cloned().unwrap_or_default();
        assert!(
            !th2.is_empty() && th2.len() < th2_expected.len(),
            "{site}: TH2 stops at the edit: {} of {} days",
            th2.len(),
            th2_expected.len()
        );
        assert_prefix_of(&th2, th2_expected, &format!("{site} TH2:AggDay"));

        // Added: the days that start after the edit, each exact.
        let th1sum_expected = daily_sums(&sent, &site, "TH1", &expected.series[&key("TH1")]);
        let th1sum = stored.get(&key("TH1sum")).cloned().unwrap_or_default();
        assert!(
            !th1sum.is_empty() && th1sum.len() < th1sum_expected.len(),
            "{site}: TH1sum starts after the edit: {} of {} days",
            th1sum.len(),
            th1sum_expected.len()
        );
        assert_suffix_of(&th1sum, &th1sum_expected, &format!("{site} TH1sum:AggDay"));

        // Redefined: sums before the edit, means of the days that start after it; the day
        // open at the edit keeps the old definition's value if it had one, else has none.
        let w1 = &stored[&key("W1")];
        let w1_sums = &expected.series[&key("W1")];
        let w1_means = daily_means(&sent, &site, "W1", w1_sums);
        let first_mean = w1
            .iter()
            .position(|(d, v)| w1_means.get(d) == Some(v) && w1_sums.get(d) != Some(v));
        let first_mean =
            first_mean.unwrap_or_else(|| panic!("{site}: W1 never computed as a mean: {w1:?}"));
        let w1_values = day_values(&sent, &site, "W1", w1_sums);
        for (i, (day, value)) in w1.iter().enumerate() {
            if i < first_mean {
                // A day emitted before the edit keeps the old definition's value: the sum
                // of the readings that had arrived by then (a late reading after the edit
                // no longer updates it).
                let partial_sums: Vec<f64> = w1_values[day]
                    .iter()
                    .scan(0.0, |total, v| {
                        *total += v;
                        Some(*total)
                    })
                    .collect();
                assert!(
                    partial_sums.contains(value),
                    "{site} W1:AggDay day {day} (#{i}): {value} is no running sum of its readings {:?}",
                    w1_values[day]
                );
            } else {
                assert_eq!(
                    Some(value),
                    w1_means.get(day),
                    "{site} W1:AggDay day {day} (#{i}, means from #{first_mean})"
                );
            }
        }
        assert!(
            w1.len() + 1 >= w1_sums.len(),
            "{site}: W1 lost more than the day open at the edit"
        );
    }
}

fn sites(expected: &Expected) -> Vec<String> {
    let mut sites: Vec<String> = expected.series.keys().map(|k| k.0.clone()).collect();
    sites.dedup();
    sites
}

fn assert_prefix_of(got: &SeriesValues, all: &SeriesValues, what: &str) {
    let want: SeriesValues = all.iter().take(got.len()).map(|(k, v)| (*k, *v)).collect();
    assert_eq!(got, &want, "{what}: not the first days of the oracle's");
}

fn assert_suffix_of(got: &SeriesValues, all: &SeriesValues, what: &str) {
    let want: SeriesValues = all
        .iter()
        .skip(all.len() - got.len())
        .map(|(k, v)| (*k, *v))
        .collect();
    assert_eq!(got, &want, "{what}: not the last days of the oracle's");
}

/// Accepted (not rejected) readings of one sensor of one site, per day, in arrival order,
/// for the days the oracle emitted (`days`).
fn day_values(
    sent: &[SentReading],
    site: &str,
    sensor: &str,
    days: &SeriesValues,
) -> BTreeMap<i64, Vec<f64>> {
    let mut by_day: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    let kinds = oracle::classify(sent);
    let accepted = sent
        .iter()
        .zip(kinds)
        .filter(|(_, k)| *k != "LateRej")
        .map(|(r, _)| r);
    for r in accepted.filter(|r| r.site == site && r.sensor == sensor) {
        let day = oracle::day_end(r.ts_ms);
        if days.contains_key(&day) {
            by_day.entry(day).or_default().push(r.value);
        }
    }
    by_day
}

fn daily_sums(sent: &[SentReading], site: &str, sensor: &str, days: &SeriesValues) -> SeriesValues {
    day_values(sent, site, sensor, days)
        .into_iter()
        .map(|(d, v)| (d, v.iter().fold(0.0, |a, b| a + b)))
        .collect()
}

fn daily_means(
    sent: &[SentReading],
    site: &str,
    sensor: &str,
    days: &SeriesValues,
) -> SeriesValues {
    day_values(sent, site, sensor, days)
        .into_iter()
        .map(|(d, v)| (d, v.iter().fold(0.0, |a, b| a + b) / v.len() as f64))
        .collect()
}

/// The plugin author's path of `plugins/README.md`: copy new plugins into the running host's
/// folder, add outputs to its pipeline file, and see them in Redis, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_plugin_deployed_by_copying_is_seen_in_redis_without_a_restart() {
    const NIGHT_FROM_MS: i64 = 2 * 3_600_000;
    const NIGHT_TO_MS: i64 = 6 * 3_600_000;
    let mut run = UnderLoad::start("new_plugin").await;
    run.files.deploy("max", &plugin_dir().join("max.wasm"));
    run.files
        .deploy("night-count", &plugin_dir().join("night-count.wasm"));
    run.files.write_pipeline(&format!(
        "{REFERENCE_PIPELINE}\n[[output]]\nname = \"TH1max\"\nkind = \"AggDay\"\nplugin = \"max\"\n\
         inputs = [\"TH1\"]\nunit = \"degC\"\n\n[[output]]\nname = \"Mov1night\"\nkind = \"AggDay\"\n\
         plugin = \"night-count\"\ninputs = [\"Mov1\"]\nunit = \"count\"\n[output.params]\n\
         from = \"02:00\"\nto = \"06:00\"\n"
    ));
    run.wait_applied(1).await;
    let Finished {
        sent,
        expected,
        stored,
        log,
        ..
    } = run.finish().await;
    assert_eq!(
        log.matches("host running").count(),
        1,
        "the host was never restarted"
    );

    assert_exact_except(&expected, &stored, |_| false);
    for site in sites(&expected) {
        let key = |name: &str| (site.clone(), name.to_owned(), "AggDay".to_owned());
        let th1_days = &expected.series[&key("TH1")];
        let maxima: SeriesValues = day_values(&sent, &site, "TH1", th1_days)
            .into_iter()
            .map(|(d, v)| (d, v.into_iter().fold(f64::MIN, f64::max)))
            .collect();
        let th1max = stored.get(&key("TH1max")).cloned().unwrap_or_default();
        assert!(!th1max.is_empty(), "{site}: TH1max is in Redis");
        assert_suffix_of(&th1max, &maxima, &format!("{site} TH1max:AggDay"));

        let mov_days = &expected.series[&key("Mov1")];
        let nights: SeriesValues = day_values(&sent, &site, "Mov1", mov_days)
            .keys()
            .map(|&d| {
                let in_night = sent
                    .iter()
                    .filter(|r| {
                        r.site == site && r.sensor == "Mov1" && oracle::day_end(r.ts_ms) == d
                    })
                    .filter(|r| r.value != 0.0)
                    .filter(|r| {
                        (NIGHT_FROM_MS..NIGHT_TO_MS).contains(&r.ts_ms.rem_euclid(oracle::DAY_MS))
                    })
                    .count();
                (d, in_night as f64)
            })
            .collect();
        let night = stored.get(&key("Mov1night")).cloned().unwrap_or_default();
        assert!(!night.is_empty(), "{site}: Mov1night is in Redis");
        assert!(
            night.values().any(|&n| n > 0.0),
            "{site}: some motion at night: {night:?}"
        );
        assert_suffix_of(&night, &nights, &format!("{site} Mov1night:AggDay"));
    }
}

/// Plugins in Python and JavaScript (plugins/README.md) deploy like a Rust build: under
/// load, the Python `mean` replaces the Rust one, then the JavaScript `mean` replaces the
/// Python one. They keep the Rust `mean`'s accumulator bytes and state version, so each
/// takes over the open windows of the one before (a window folded partly by all three
/// languages), and every stored value equals the oracle's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn means_in_python_and_javascript_swapped_in_under_load_stay_exact() {
    // Their runtimes import clocks, randomness and files: the tenant opts in; and it sets
    // the limits plugins/README.md gives for the JavaScript runtime's garbage-collected heap.
    let mut run = UnderLoad::start_with(
        "other_languages",
        &[
            "--wasi",
            "deterministic",
            "--max-memory-mib",
            "128",
            "--fuel-per-call",
            "300000000",
        ],
    )
    .await;
    run.files
        .deploy("mean", &other_language_plugin("python", "mean"));
    run.wait_applied(1).await;
    run.wait_for_more_stored(DAYS_STORED_AFTER, "days folded by the Python mean")
        .await;
    run.files
        .deploy("mean", &other_language_plugin("js", "mean"));
    run.wait_applied(2).await;
    let end = run.finish().await;

    // The reference pipeline's outputs on `mean` (TH1 and TH2 day means) carried over.
    let applied: Vec<&str> = end
        .log
        .lines()
        .filter(|l| l.contains("applied a new build"))
        .collect();
    assert_eq!(
        applied.len(),
        2,
        "two deploys applied; host log:\n{}",
        end.log
    );
    for line in applied {
        assert!(
            line.contains(r#"("TH1:AggDay", true)"#) && !line.contains("false)"),
            "open windows carried over to the new language's mean: {line}"
        );
    }
    for trouble in ["refused", "quarantined", "trapped", "exceeded"] {
        assert!(
            !end.log.contains(trouble),
            "the host log says {trouble:?}:\n{}",
            end.log
        );
    }
    assert_exact_except(&end.expected, &end.stored, |_| false);
}
