//! Two tenants side by side in one host (SPEC §6): each has its own sites, plugin folder,
//! pipeline and limits. Tenant B's `sum` is a marked build (+1e6) and its pipeline has a
//! looping plugin under a small fuel bound; tenant A runs the reference plugins.
//!
//! Isolation shows in the numbers: had any of A's readings reached B's plugins (or the
//! reverse), A's sums would carry B's marker or B's sums would hold A's readings. A's values
//! must equal the oracle, B's the oracle plus the marker, and B's fault must leave A alone.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use iot_simulator::{publish, PublishConfig, SimConfig};
use system_tests::fixture::{fixture_plugin, plugin_dir, TestScope};
use system_tests::harness::{produce, SystemTopics};
use system_tests::live_host::{HostFiles, LiveHost, REFERENCE_PIPELINE, REFERENCE_PLUGINS};
use system_tests::oracle::{self, SentReading};
use system_tests::redis_read;
use system_tests::topic::read_all;

/// 2020-01-01T00:00:00Z.
const RUN_START_MS: i64 = 1_577_836_800_000;
const PARTITIONS: i32 = 2;
const MARK_V1: f64 = 1_000_000.0;
const SUM_OUTPUTS: [&str; 5] = ["HVAC1", "HVAC2", "MiAC1", "MiAC2", "W1"];
/// Tenant B's CPU bound per call.
const B_FUEL: u64 = 2_000_000;

async fn publish_site_group(scope: &TestScope, topics: &SystemTopics, prefix: &str, seed: u64) {
    let report = publish(
        PublishConfig::fast(
            &scope.services.kafka_bootstrap,
            &topics.readings,
            SimConfig {
                sites: 2,
                seed,
                start_ms: RUN_START_MS,
                days: Some(5),
                site_prefix: prefix.to_owned(),
            },
        ),
        Arc::new(AtomicBool::new(false)),
    )
    .await
    .expect("the simulator ran");
    assert!(report.failure.is_none());
}

fn tenants_file(a: &HostFiles, b: &HostFiles, a_sites: &str, b_sites: &str) -> String {
    format!(
        "[[tenant]]\nname = \"a\"\nsites = [\"{a_sites}*\"]\nplugins = \"{}\"\npipeline = \"{}\"\n\n\
         [[tenant]]\nname = \"b\"\nsites = [\"{b_sites}*\"]\nplugins = \"{}\"\npipeline = \"{}\"\n\
         fuel_per_call = {B_FUEL}\nmax_memory_mib = 16\n",
        a.plugins().display(),
        a.pipeline().display(),
        b.plugins().display(),
        b.pipeline().display(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_see_only_their_own_sites_and_a_faulty_tenant_leaves_the_other_exact() {
    let mut scope = TestScope::new("tenants");
    let topics = SystemTopics::create(&mut scope, PARTITIONS).await;
    let a = HostFiles::reference(&scope);
    let b = HostFiles::empty(&scope, "tenant-b");
    for name in REFERENCE_PLUGINS.iter().filter(|&&n| n != "sum") {
        b.deploy(name, &plugin_dir().join(format!("{name}.wasm")));
    }
    b.deploy("sum", &fixture_plugin("sum-marked-v1"));
    b.deploy("probe", &fixture_plugin("misbehaving"));
    b.write_pipeline(&format!(
        "{REFERENCE_PIPELINE}\n[[output]]\nname = \"TH1probe\"\nkind = \"AggDay\"\nplugin = \"probe\"\n\
         inputs = [\"TH1\"]\nunit = \"degC\"\nparams = {{ mode = \"loop\" }}\n"
    ));
    let (a_sites, b_sites) = (format!("{}-a", scope.id), format!("{}-b", scope.id));
    let tenants = a.dir.join("tenants.toml");
    std::fs::write(&tenants, tenants_file(&a, &b, &a_sites, &b_sites)).unwrap();

    publish_site_group(&scope, &topics, &a_sites, 21).await;
    publish_site_group(&scope, &topics, &b_sites, 22).await;
    let stray_site = format!("{}-nobody", scope.id);
    let stray = format!(
        r#"{{"site":"{stray_site}","sensor":"TH1","ts":"2020-01-01T00:15:00Z","value":20.5}}"#
    );
    produce(
        &scope.services.kafka_bootstrap,
        &topics.readings,
        0,
        &stray_site,
        &[stray],
    )
    .await;

    let log = std::env::temp_dir().join(format!("{}-host.log", scope.id));
    let host = LiveHost::start(
        &scope,
        &topics,
        &log,
        &[
            "--tenants",
            tenants.to_str().unwrap(),
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
        "the host ran to the end; see {}",
        log.display()
    );

    let sent: Vec<SentReading> = read_all(&scope.services.kafka_bootstrap, &topics.readings)
        .iter()
        .filter_map(oracle::sent_reading)
        .filter(|r| r.site != stray_site)
        .collect();
    let expected = oracle::expected(&sent);
    let stored = redis_read::all_series(&mut scope.redis_conn().await, &scope.key_prefix()).await;
    let mut b_marked = 0;
    for (key, values) in &expected.series {
        let got = stored
            .get(key)
            .unwrap_or_else(|| panic!("{key:?} is not stored"));
        let b_sum = key.0.starts_with(&b_sites)
            && key.2 == "AggDay"
            && SUM_OUTPUTS.contains(&key.1.as_str());
        if b_sum {
            let marked: oracle::SeriesValues =
                values.iter().map(|(d, v)| (*d, v + MARK_V1)).collect();
            assert_eq!(
                got, &marked,
                "{key:?}: tenant b's own sum build finishes its windows"
            );
            b_marked += 1;
        } else if key.0.starts_with(&b_sites) && key.2 == "AggDayRest" {
            continue; // computed from b's marked sums
        } else {
            assert_eq!(got, values, "{key:?} differs from the oracle");
        }
    }
    assert_eq!(b_marked, 2 * SUM_OUTPUTS.len());
    assert!(
        !stored
            .keys()
            .any(|k| k.1 == "TH1probe" && k.0.starts_with(&a_sites)),
        "tenant a has no probe output"
    );
    assert!(
        !stored.keys().any(|k| k.1 == "TH1probe"),
        "the looping probe never produced a value"
    );

    let errors: Vec<serde_json::Value> =
        read_all(&scope.services.kafka_bootstrap, &topics.plugin_errors)
            .iter()
            .map(|r| r.json())
            .collect();
    assert!(!errors.is_empty(), "tenant b's looping plugin was reported");
    for e in &errors {
        assert_eq!(e["tenant"], "b", "only tenant b has plugin errors: {e}");
    }
    let fuel = errors
        .iter()
        .find(|e| e["action"] == "held")
        .expect("a held window");
    assert!(
        fuel["error"]
            .as_str()
            .unwrap()
            .contains(&format!("{B_FUEL} per call")),
        "tenant b's own fuel bound stopped the loop: {fuel}"
    );
    assert!(
        errors.iter().any(|e| e["action"] == "quarantined"),
        "{errors:?}"
    );

    let dead: Vec<serde_json::Value> =
        read_all(&scope.services.kafka_bootstrap, &topics.dead_letter)
            .iter()
            .map(|r| r.json())
            .collect();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["reason"], "no-tenant");
    assert!(dead[0]["detail"].as_str().unwrap().contains(&stray_site));
    let _ = std::fs::remove_file(&log);
}
