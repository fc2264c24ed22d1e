//! Hostile plugins in one host beside a healthy tenant (SPEC §6, §8). Each hostile plugin
//! runs as a tenant of its own, so each is seen failing on its own terms (a build shared by
//! several outputs is quarantined as one): an accumulator of 16 MiB from `init`, one that
//! grows on every `fold`, a 4 MiB error message, endless recursion, and a plugin that stays
//! under the fuel bound but is slow on every call.
//!
//! Contained means: the host runs through the whole backlog (nothing wedges), the healthy
//! tenant's every series equals the oracle, each hostile output is held and reported in
//! bounded `plugin-errors` records, and no checkpoint carries a hostile accumulator.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use iot_host::plugin::PluginLimits;
use iot_simulator::{publish, PublishConfig, SimConfig};
use system_tests::fixture::{fixture_plugin, TestScope};
use system_tests::harness::SystemTopics;
use system_tests::live_host::{HostFiles, LiveHost};
use system_tests::oracle::{self, SentReading, SeriesValues};
use system_tests::progress::checkpoint_key;
use system_tests::redis_read;
use system_tests::topic::read_all;

/// 2020-01-01T00:00:00Z.
const RUN_START_MS: i64 = 1_577_836_800_000;
const PARTITIONS: i32 = 3;
const DAYS: u32 = 4;
/// Small batches: a day of a site is folded over many calls, so `grow-state` outgrows the
/// bound within a day.
const HOST_BATCH: &str = "200";
/// Iterations the slow plugin spins on every call: millions of fuel, under the bound.
const SLOW_SPIN: &str = "3000000";
/// A `plugin-errors` record stays far below Kafka's message bound whatever the plugin said.
const MAX_ERROR_RECORD_BYTES: usize = 4 * 1024;
/// No checkpoint holds a hostile accumulator: the shipped plugins keep a few bytes a window.
const MAX_CHECKPOINT_BYTES: usize = 256 * 1024;

/// A hostile tenant: its name, the fixture's mode, and what its `held` records must say.
struct Hostile {
    name: &'static str,
    mode: &'static str,
    error_says: &'static str,
    /// Fails on every window, so 3 failures in a row quarantine the build. (`grow-state`
    /// succeeds on the first folds of each new window, which resets the count.)
    fails_every_call: bool,
}

const HOSTILE: [Hostile; 4] = [
    Hostile {
        name: "huge-init",
        mode: "huge-init",
        fails_every_call: true,
        error_says: "over the bound of 65536 bytes per window",
    },
    Hostile {
        name: "grow-state",
        mode: "grow-state",
        fails_every_call: false,
        error_says: "over the bound of 65536 bytes per window",
    },
    Hostile {
        name: "huge-error",
        mode: "huge-error",
        fails_every_call: true,
        error_says: "bytes, cut to",
    },
    Hostile {
        name: "recurse",
        mode: "recurse",
        fails_every_call: true,
        error_says: "trapped in fold",
    },
];

fn probe_pipeline(mode: &str, extra: &str) -> String {
    format!(
        "[[output]]\nname = \"TH1probe\"\nkind = \"AggDay\"\nplugin = \"probe\"\n\
         inputs = [\"TH1\"]\nunit = \"degC\"\nparams = {{ mode = \"{mode}\"{extra} }}\n"
    )
}

fn tenant_entry(name: &str, sites: &str, files: &HostFiles) -> String {
    format!(
        "[[tenant]]\nname = \"{name}\"\nsites = [\"{sites}*\"]\nplugins = \"{}\"\npipeline = \"{}\"\n\n",
        files.plugins().display(),
        files.pipeline().display(),
    )
}

async fn publish_sites(
    scope: &TestScope,
    topics: &SystemTopics,
    prefix: &str,
    sites: u32,
    seed: u64,
) {
    let report = publish(
        PublishConfig::fast(
            &scope.services.kafka_bootstrap,
            &topics.readings,
            SimConfig {
                sites,
                seed,
                start_ms: RUN_START_MS,
                days: Some(DAYS),
                site_prefix: prefix.to_owned(),
            },
        ),
        Arc::new(AtomicBool::new(false)),
    )
    .await
    .expect("the simulator ran");
    assert!(report.failure.is_none(), "{:?}", report.failure);
}

/// Sum of each day's TH1 readings of `site`, for the days the oracle emits.
fn daily_th1_sums(sent: &[SentReading], site: &str, days: &SeriesValues) -> SeriesValues {
    let mut sums: SeriesValues = days.keys().map(|&d| (d, 0.0)).collect();
    for r in sent.iter().filter(|r| r.site == site && r.sensor == "TH1") {
        if let Some(total) = sums.get_mut(&oracle::day_end(r.ts_ms)) {
            *total += r.value;
        }
    }
    sums
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_plugins_fail_only_their_own_outputs_and_the_healthy_tenant_stays_exact() {
    let mut scope = TestScope::new("hostile");
    let topics = SystemTopics::create(&mut scope, PARTITIONS).await;
    let healthy = HostFiles::reference(&scope);
    let healthy_sites = format!("{}-ok", scope.id);
    let mut tenants = tenant_entry("healthy", &healthy_sites, &healthy);
    let mut hostile_files = Vec::new();
    for hostile in HOSTILE.iter() {
        let files = HostFiles::empty(&scope, hostile.name);
        files.deploy("probe", &fixture_plugin("misbehaving"));
        files.write_pipeline(&probe_pipeline(hostile.mode, ""));
        tenants.push_str(&tenant_entry(
            hostile.name,
            &format!("{}-{}", scope.id, hostile.name),
            &files,
        ));
        hostile_files.push(files);
    }
    let slow = HostFiles::empty(&scope, "slow");
    slow.deploy("probe", &fixture_plugin("misbehaving"));
    slow.write_pipeline(&probe_pipeline(
        "slow",
        &format!(", spin = \"{SLOW_SPIN}\""),
    ));
    let slow_sites = format!("{}-slow", scope.id);
    tenants.push_str(&tenant_entry("slow", &slow_sites, &slow));
    let tenants_file = healthy.dir.join("tenants.toml");
    std::fs::write(&tenants_file, tenants).unwrap();

    publish_sites(&scope, &topics, &healthy_sites, 2, 31).await;
    for (i, hostile) in HOSTILE.iter().enumerate() {
        publish_sites(
            &scope,
            &topics,
            &format!("{}-{}", scope.id, hostile.name),
            1,
            40 + i as u64,
        )
        .await;
    }
    publish_sites(&scope, &topics, &slow_sites, 1, 50).await;

    let log = std::env::temp_dir().join(format!("{}-host.log", scope.id));
    let host = LiveHost::start(
        &scope,
        &topics,
        &log,
        &[
            "--tenants",
            tenants_file.to_str().unwrap(),
            "--batch-size",
            HOST_BATCH,
            "--exit-when-caught-up",
            "--no-watch",
        ],
    );
    let status = tokio::task::spawn_blocking(move || {
        let mut host = host;
        host.wait()
    })
    .await
    .unwrap();
    assert!(
        status.success(),
        "the host ran through the backlog; see {}",
        log.display()
    );

    let sent: Vec<SentReading> = read_all(&scope.services.kafka_bootstrap, &topics.readings)
        .iter()
        .filter_map(oracle::sent_reading)
        .collect();
    let expected = oracle::expected(&sent);
    let mut conn = scope.redis_conn().await;
    let stored = redis_read::all_series(&mut conn, &scope.key_prefix()).await;

    // The healthy tenant: every series exact.
    let mut healthy_series = 0;
    for (key, values) in expected
        .series
        .iter()
        .filter(|(k, _)| k.0.starts_with(&healthy_sites))
    {
        assert_eq!(
            stored.get(key),
            Some(values),
            "{key:?} of the healthy tenant differs from the oracle"
        );
        healthy_series += 1;
    }
    assert!(
        healthy_series > 40,
        "the healthy tenant has its outputs: {healthy_series}"
    );

    // The slow tenant: slow, but every day exact.
    let slow_site = format!("{slow_sites}1");
    let th1_days = &expected.series[&(slow_site.clone(), "TH1".to_owned(), "AggDay".to_owned())];
    let probe_key = (
        slow_site.clone(),
        "TH1probe".to_owned(),
        "AggDay".to_owned(),
    );
    assert_eq!(
        stored.get(&probe_key),
        Some(&daily_th1_sums(&sent, &slow_site, th1_days)),
        "the slow plugin's every day is TH1's daily sum"
    );

    // Each hostile tenant: its output held and reported, never a wrong value.
    let errors: Vec<(usize, serde_json::Value)> =
        read_all(&scope.services.kafka_bootstrap, &topics.plugin_errors)
            .iter()
            .map(|r| (r.value.len(), r.json()))
            .collect();
    for (bytes, e) in &errors {
        assert!(
            *bytes <= MAX_ERROR_RECORD_BYTES,
            "a plugin-errors record of {bytes} bytes: {e}"
        );
        assert_ne!(
            e["tenant"], "healthy",
            "the healthy tenant has no plugin errors: {e}"
        );
        assert_ne!(
            e["tenant"], "slow",
            "the slow tenant has no plugin errors: {e}"
        );
    }
    for hostile in HOSTILE.iter() {
        let site = format!("{}-{}1", scope.id, hostile.name);
        let held: Vec<&serde_json::Value> = errors
            .iter()
            .map(|(_, e)| e)
            .filter(|e| e["tenant"] == hostile.name && e["action"] == "held")
            .collect();
        assert!(
            !held.is_empty(),
            "{}: a held window was reported",
            hostile.name
        );
        for e in &held {
            let text = e["error"].as_str().unwrap();
            assert!(
                text.contains(hostile.error_says),
                "{}: {text}",
                hostile.name
            );
        }
        if hostile.fails_every_call {
            assert!(
                errors
                    .iter()
                    .any(|(_, e)| e["tenant"] == hostile.name && e["action"] == "quarantined"),
                "{}: its build was quarantined",
                hostile.name
            );
        }
        // A value is stored only for a day whose every fold stayed within bounds
        // (`grow-state` before it grew too big), and then it is the true sum.
        let th1_days = &expected.series[&(site.clone(), "TH1".to_owned(), "AggDay".to_owned())];
        let sums = daily_th1_sums(&sent, &site, th1_days);
        if let Some(values) =
            stored.get(&(site.clone(), "TH1probe".to_owned(), "AggDay".to_owned()))
        {
            for (day, value) in values {
                assert_eq!(Some(value), sums.get(day), "{}: day {day}", hostile.name);
            }
        }
    }

    // No checkpoint carries a hostile accumulator. (A partition no site hashed to has
    // none: site names are random per run.)
    let mut checkpoints = 0;
    for p in 0..PARTITIONS {
        let key = checkpoint_key(&scope, &topics.readings, p);
        let fields: Vec<Vec<u8>> = redis::cmd("HVALS")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        let len: usize = fields.iter().map(Vec::len).sum();
        checkpoints += usize::from(len > 0);
        assert!(len <= MAX_CHECKPOINT_BYTES, "{key} holds {len} bytes");
    }
    assert!(checkpoints > 0, "the host wrote checkpoints");
    assert_eq!(
        PluginLimits::DEFAULT_MAX_STATE_BYTES,
        65536,
        "the bound the error texts name"
    );
    let _ = std::fs::remove_file(&log);
}
