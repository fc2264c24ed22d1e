//! A plugin broken and then fixed on a running host (SPEC §6, §8): the broken build fails
//! only its own output, with `plugin-errors` records and a quarantine; every other output
//! stays exact; the fixed build resumes the output and recovers the windows it held, so in
//! the end even the faulty output is exact.

use std::time::Duration;

use iot_simulator::SimConfig;
use system_tests::fixture::{fixture_plugin, TestScope};
use system_tests::harness::SystemTopics;
use system_tests::live_host::{HostFiles, LiveHost, REFERENCE_PIPELINE};
use system_tests::load::Load;
use system_tests::oracle::{self, SentReading, SeriesValues};
use system_tests::progress::Progress;
use system_tests::redis_read;
use system_tests::topic::read_all;

/// 2020-01-01T00:00:00Z.
const RUN_START_MS: i64 = 1_577_836_800_000;
const PARTITIONS: i32 = 2;
const STEPS_PER_SECOND: f64 = 60.0;
/// Held windows must still be open when the fix lands, however long the fix takes to build
/// on a slow machine while the load runs on: the host keeps every window for a long time.
const ALLOWED_LATENESS: &str = "1000d";
const ALLOWED_LATENESS_MS: i64 = 1000 * oracle::DAY_MS;
/// Records stored before the faulty build is deployed, and after the fix before the load
/// stops (a few days: the fixed build also finishes days of its own).
const STORED_BEFORE_FAULT: i64 = 1_500;
const STORED_AFTER_FIX: i64 = 4_000;
/// The `sum-marked-v2` fixture finishes a window with this added to the true sum.
const MARK_V2: f64 = 2_000_000.0;
/// A small CPU bound, so the looping build fails fast.
const FUEL_PER_CALL: &str = "5000000";
/// Generous: the load runs on while the test waits, so a slow machine only takes longer.
const TIMEOUT: Duration = Duration::from_secs(300);
/// Generous: draining what the load published after it stopped.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(600);

/// The reference pipeline plus `TH1probe`: the sum of TH1 computed by the plugin `probe`,
/// whose parameters ask the misbehaving fixture to loop (other builds ignore them).
fn pipeline_with_probe() -> String {
    format!(
        "{REFERENCE_PIPELINE}\n[[output]]\nname = \"TH1probe\"\nkind = \"AggDay\"\nplugin = \"probe\"\n\
         inputs = [\"TH1\"]\nunit = \"degC\"\nparams = {{ mode = \"loop\" }}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_build_fails_only_its_output_and_a_fixed_build_recovers_every_held_window() {
    let mut scope = TestScope::new("plugin_faults");
    let topics = SystemTopics::create(&mut scope, PARTITIONS).await;
    let files = HostFiles::reference(&scope);
    files.deploy("probe", &fixture_plugin("sum-marked-v2"));
    files.write_pipeline(&pipeline_with_probe());
    let log = std::env::temp_dir().join(format!("{}-host.log", scope.id));
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
            "--fuel-per-call",
            FUEL_PER_CALL,
            "--batch-size",
            "50",
            "--allowed-lateness",
            ALLOWED_LATENESS,
        ],
    );
    host.wait_for_log("watching for new plugin builds", 1, TIMEOUT)
        .await;
    let mut conn = scope.redis_conn().await;
    let progress = Progress::new(&scope, &topics.readings, PARTITIONS);
    let mut load = Load::start(
        &scope,
        &topics.readings,
        SimConfig {
            sites: 2,
            seed: 9,
            start_ms: RUN_START_MS,
            days: None,
            site_prefix: format!("{}-s", scope.id),
        },
        STEPS_PER_SECOND,
    );
    progress
        .wait_until(
            &mut host,
            Some(&mut load),
            STORED_BEFORE_FAULT,
            TIMEOUT,
            "before the faulty build",
        )
        .await;

    files.deploy("probe", &fixture_plugin("misbehaving"));
    host.wait_for_log("quarantined after", 1, TIMEOUT).await;
    files.deploy("probe", &fixture_plugin("sum-marked-v2"));
    host.wait_for_log("applied a new build", 2, TIMEOUT).await;
    assert!(load.is_running(), "the load ended before it was stopped");
    progress
        .wait_for_more(
            &mut host,
            Some(&mut load),
            STORED_AFTER_FIX,
            TIMEOUT,
            "after the fixed build",
        )
        .await;
    load.stop().await;
    let sent: Vec<SentReading> = read_all(&scope.services.kafka_bootstrap, &topics.readings)
        .iter()
        .map(|r| oracle::sent_reading(r).unwrap())
        .collect();
    progress
        .wait_until(
            &mut host,
            None,
            sent.len() as i64,
            DRAIN_TIMEOUT,
            "everything the load sent",
        )
        .await;
    host.stop().await;

    // The faults were reported: held windows with the fuel error, then the quarantine.
    let errors: Vec<serde_json::Value> =
        read_all(&scope.services.kafka_bootstrap, &topics.plugin_errors)
            .iter()
            .map(|r| r.json())
            .collect();
    let held: Vec<&serde_json::Value> = errors.iter().filter(|e| e["action"] == "held").collect();
    assert!(
        held.len() >= 3,
        "at least three failures before the quarantine: {errors:?}"
    );
    for e in &held {
        assert_eq!(e["output"], "TH1probe", "only the probe output failed: {e}");
        assert!(
            e["error"].as_str().unwrap().contains("ran out of fuel"),
            "{e}"
        );
    }
    assert_eq!(
        errors
            .iter()
            .filter(|e| e["action"] == "quarantined")
            .count(),
        1,
        "{errors:?}"
    );
    assert!(
        !errors.iter().any(|e| e["action"] == "dropped"),
        "no held window was lost: {errors:?}"
    );

    // Every output is exact, the faulty one included once the fix replayed its held samples.
    let expected = oracle::expected_with_lateness(&sent, ALLOWED_LATENESS_MS);
    let stored = redis_read::all_series(&mut conn, &scope.key_prefix()).await;
    for (key, values) in &expected.series {
        assert_eq!(
            stored.get(key),
            Some(values),
            "{key:?} differs from the oracle"
        );
    }
    for ((site, sensor, kind), th1) in expected
        .series
        .iter()
        .filter(|(k, _)| k.1 == "TH1" && k.2 == "AggDay")
    {
        let probe_key = (site.clone(), "TH1probe".to_owned(), kind.clone());
        let probe = stored
            .get(&probe_key)
            .unwrap_or_else(|| panic!("no {probe_key:?}"));
        let want = marked_daily_sums(&sent, site, sensor, th1);
        assert_eq!(
            probe, &want,
            "{site} TH1probe: every day is TH1's sum + {MARK_V2}"
        );
    }
    let _ = std::fs::remove_file(&log);
}

/// Sum of the day's TH1 readings (arrival order) plus the marker, for each day TH1 has.
fn marked_daily_sums(
    sent: &[SentReading],
    site: &str,
    sensor: &str,
    days: &SeriesValues,
) -> SeriesValues {
    let mut sums: SeriesValues = days.keys().map(|&d| (d, 0.0)).collect();
    for r in sent.iter().filter(|r| r.site == site && r.sensor == sensor) {
        if let Some(total) = sums.get_mut(&oracle::day_end(r.ts_ms)) {
            *total += r.value;
        }
    }
    sums.values_mut().for_each(|v| *v += MARK_V2);
    sums
}
