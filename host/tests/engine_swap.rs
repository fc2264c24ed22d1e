//! The engine's swap rules, driven directly with hand-made records and real plugin builds
//! (no Kafka, no Redis): what happens to a window open at a swap, across a restart from a
//! checkpoint, when a build fails, and when the pipeline changes. Expected values are
//! computed here from the readings.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::common::{fixture, plugin_dir};
use iot_host::engine::checkpoint_format::StoredFields;
use iot_host::engine::{
    Effects, Engine, EngineConfig, OutTopic, PartitionCheckpoint, SourceRecord, TenantSetup,
};
use iot_host::pipeline::Pipeline;
use iot_host::plugin::{LoadedPlugin, PluginHost, PluginLimits};
use iot_host::tenant::{SiteMatcher, TenantBuild};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// 2020-01-01T00:00:00Z: day 1 is (JAN_1, JAN_1 + 1 day].
const JAN_1: i64 = 1_577_836_800_000;
const MARK_V1: f64 = 1_000_000.0;
const MARK_V2: f64 = 2_000_000.0;
const SITE: &str = "s1";

fn at(day: i64, hours: i64) -> i64 {
    JAN_1 + (day - 1) * DAY_MS + hours * HOUR_MS
}

/// The end instant of day `day`, where its value is stored.
fn end_of(day: i64) -> i64 {
    JAN_1 + day * DAY_MS
}

/// One output, HVAC1's daily value, computed by the plugin `daily` with `params`.
fn pipeline(params: &str) -> Arc<Pipeline> {
    Arc::new(
        Pipeline::parse(&format!(
            "[[output]]\nname = \"HVAC1\"\nkind = \"AggDay\"\nplugin = \"daily\"\ninputs = [\"HVAC1\"]\nparams = {{ {params} }}\n"
        ))
        .unwrap(),
    )
}

fn host() -> PluginHost {
    PluginHost::new(PluginLimits::default()).unwrap()
}

fn load(host: &PluginHost, path: &std::path::Path) -> LoadedPlugin {
    host.load_file(path).unwrap()
}

fn build(pipeline: Arc<Pipeline>, daily: &LoadedPlugin) -> TenantBuild {
    TenantBuild {
        pipeline,
        plugins: HashMap::from([("daily".to_owned(), daily.clone())]),
    }
}

fn engine(host: &PluginHost, build: TenantBuild) -> Engine {
    let mut engine = Engine::with_tenants(
        EngineConfig::default(),
        vec![TenantSetup {
            name: "t".into(),
            sites: SiteMatcher::all(),
            plugin_host: host.clone(),
            build,
        }],
    )
    .unwrap();
    engine.restore_partition(0, None, &HashMap::new()).unwrap();
    engine
}

/// Feeds HVAC1 readings as records of partition 0 and collects what the batches store.
struct Driver {
    engine: Engine,
    next_offset: i64,
    keys: HashMap<u32, String>,
    /// (key, ts) → last value stored.
    stored: BTreeMap<(String, i64), f64>,
    records: Vec<(OutTopic, serde_json::Value)>,
    effects: Vec<Effects>,
    /// Partition 0's checkpoint as a store holds it: every write applied in order.
    checkpoint: StoredFields,
}

impl Driver {
    fn new(engine: Engine) -> Driver {
        Driver {
            engine,
            next_offset: 0,
            keys: HashMap::new(),
            stored: BTreeMap::new(),
            records: Vec::new(),
            effects: Vec::new(),
            checkpoint: StoredFields::default(),
        }
    }

    /// The checkpoint a restart would read now.
    fn stored_checkpoint(&self) -> PartitionCheckpoint {
        self.checkpoint
            .decode(0)
            .expect("the stored checkpoint decodes")
            .expect("a checkpoint was written")
    }

    fn batch(&mut self, readings: &[(i64, f64)]) {
        for &(ts, value) in readings {
            let payload = format!(
                r#"{{"site":"{SITE}","sensor":"HVAC1","ts":"{}","value":{value}}}"#,
                chrono::DateTime::from_timestamp_millis(ts)
                    .unwrap()
                    .format("%Y-%m-%dT%H:%M:%SZ")
            );
            self.engine.process(&SourceRecord {
                partition: 0,
                offset: self.next_offset,
                key: Some(SITE.as_bytes().to_vec()),
                payload: payload.into_bytes(),
            });
            self.next_offset += 1;
        }
        let effects = self.engine.finish_batch();
        self.take(effects);
    }

    fn take(&mut self, effects: Effects) {
        for def in &effects.new_series {
            self.keys.insert(def.id, def.key.clone());
        }
        for s in &effects.samples {
            self.stored
                .insert((self.keys[&s.series].clone(), s.ts_ms), s.value);
        }
        for r in &effects.records {
            self.records
                .push((r.topic, serde_json::from_str(&r.value).unwrap()));
        }
        for write in &effects.checkpoints {
            self.checkpoint.apply(write);
        }
        self.effects.push(effects);
    }

    fn apply(&mut self, build: &TenantBuild) {
        self.engine.apply(0, build).unwrap();
        let effects = self.engine.finish_batch();
        self.take(effects);
    }

    fn day_value(&self, day: i64) -> Option<f64> {
        self.stored
            .get(&(format!("iot:{SITE}:HVAC1:AggDay"), end_of(day)))
            .copied()
    }

    fn plugin_errors(&self, action: &str) -> usize {
        self.records
            .iter()
            .filter(|(t, v)| *t == OutTopic::PluginErrors && v["action"] == action)
            .count()
    }
}

#[test]
fn a_swap_to_the_same_state_version_carries_the_open_window_over() {
    let host = host();
    let sum = load(&host, &plugin_dir().join("sum.wasm"));
    let marked = load(&host, &fixture("sum-marked-v1"));
    let mut d = Driver::new(engine(&host, build(pipeline(""), &sum)));
    d.batch(&[(at(1, 6), 1.5), (at(1, 12), 2.25)]);
    d.apply(&build(pipeline(""), &marked));
    d.batch(&[(at(1, 18), 3.0), (at(2, 1), 4.0)]);
    assert_eq!(
        d.day_value(1),
        Some(1.5 + 2.25 + 3.0 + MARK_V1),
        "every reading once, finished by the new build"
    );
}

#[test]
fn a_swap_to_another_state_version_lets_the_old_build_finish_its_windows() {
    let host = host();
    let sum = load(&host, &plugin_dir().join("sum.wasm"));
    let v2 = load(&host, &fixture("sum-marked-v2"));
    let mut d = Driver::new(engine(&host, build(pipeline(""), &sum)));
    d.batch(&[(at(1, 6), 1.5), (at(1, 12), 2.25)]);
    d.apply(&build(pipeline(""), &v2));
    d.batch(&[
        (at(1, 18), 3.0),
        (at(2, 1), 4.0),
        (at(2, 2), 0.5),
        (at(3, 1), 1.0),
    ]);
    assert_eq!(
        d.day_value(1),
        Some(1.5 + 2.25 + 3.0),
        "opened before the swap: the old build"
    );
    assert_eq!(
        d.day_value(2),
        Some(4.0 + 0.5 + MARK_V2),
        "opened after the swap: the new build"
    );
}

#[test]
fn a_restart_finishes_an_old_builds_window_with_the_archived_build() {
    let host = host();
    let sum = load(&host, &plugin_dir().join("sum.wasm"));
    let v2 = load(&host, &fixture("sum-marked-v2"));
    let mut d = Driver::new(engine(&host, build(pipeline(""), &sum)));
    d.batch(&[(at(1, 6), 1.5), (at(1, 12), 2.25)]);
    d.apply(&build(pipeline(""), &v2));
    d.batch(&[(at(1, 18), 3.0)]);
    let archive: HashMap<String, Vec<u8>> = d
        .effects
        .iter()
        .flat_map(|e| e.plugin_builds.iter())
        .map(|(hash, bytes)| (hash.clone(), bytes.to_vec()))
        .collect();
    assert!(
        archive.contains_key(sum.hash()) && archive.contains_key(v2.hash()),
        "both builds archived"
    );
    let checkpoint = d.stored_checkpoint();

    // A new process whose plugin folder holds only the new build.
    let mut restarted = Engine::with_tenants(
        EngineConfig::default(),
        vec![TenantSetup {
            name: "t".into(),
            sites: SiteMatcher::all(),
            plugin_host: host.clone(),
            build: build(pipeline(""), &v2),
        }],
    )
    .unwrap();
    assert_eq!(
        restarted.missing_builds(&checkpoint),
        vec![sum.hash().to_owned()]
    );
    let needed: HashMap<String, Vec<u8>> = restarted
        .missing_builds(&checkpoint)
        .into_iter()
        .map(|h| (h.clone(), archive[&h].clone()))
        .collect();
    restarted
        .restore_partition(0, Some(checkpoint.clone()), &needed)
        .unwrap();
    let mut r = Driver::new(restarted);
    r.keys = d.keys.clone();
    r.next_offset = checkpoint.next_offset;
    r.batch(&[(at(2, 1), 4.0)]);
    assert_eq!(
        r.day_value(1),
        Some(1.5 + 2.25 + 3.0),
        "the archived old build finished day 1"
    );
}

#[test]
fn a_failing_build_holds_its_window_and_a_fixed_build_recovers_it_exactly() {
    let host = host();
    let broken = load(&host, &fixture("misbehaving"));
    // The fix: a sum that, like the broken build, accepts the `mode` parameter (the
    // shipped `sum` refuses parameters it does not take).
    let sum = load(&host, &fixture("sum-marked-v1"));
    let failing = pipeline("mode = \"error\"");
    let mut d = Driver::new(engine(&host, build(failing.clone(), &broken)));
    d.batch(&[(at(1, 6), 1.5), (at(1, 12), 2.25)]);
    d.batch(&[(at(2, 1), 4.0)]);
    assert_eq!(d.day_value(1), None, "a held window has no value");
    assert_eq!(d.plugin_errors("held"), 2, "one record per failed call");
    let tenant = d.engine.tenant_names()[0].to_owned();
    assert_eq!(
        d.engine.held_windows(),
        [(tenant.as_str(), 2)],
        "days 1 and 2 are held (what iot_held_windows reports)"
    );
    d.apply(&build(failing, &sum));
    assert_eq!(d.engine.held_windows(), [(tenant.as_str(), 0)]);
    assert_eq!(
        d.day_value(1),
        Some(1.5 + 2.25 + MARK_V1),
        "recovered from the held readings"
    );
    d.batch(&[(at(3, 1), 1.0)]);
    assert_eq!(d.day_value(2), Some(4.0 + MARK_V1));
}

#[test]
fn a_build_failing_three_times_in_a_row_is_quarantined_and_not_called_again() {
    let host = host();
    let broken = load(&host, &fixture("misbehaving"));
    let mut d = Driver::new(engine(&host, build(pipeline("mode = \"error\""), &broken)));
    for day in 1..=5 {
        d.batch(&[(at(day, 6), 1.0)]);
    }
    assert_eq!(
        d.plugin_errors("held"),
        3,
        "three calls failed, then no more calls"
    );
    assert_eq!(d.plugin_errors("quarantined"), 1);
    // Days 1 and 2 passed the allowed lateness (2 days) while held: reported as dropped.
    assert_eq!(d.plugin_errors("dropped"), 2);
    assert_eq!(d.engine.stats().plugin_errors, 3 + 2);
}

#[test]
fn a_pipeline_edit_adds_an_output_from_the_next_whole_day_on() {
    let host = host();
    let sum = load(&host, &plugin_dir().join("sum.wasm"));
    let max = load(&host, &plugin_dir().join("max.wasm"));
    let mut d = Driver::new(engine(&host, build(pipeline(""), &sum)));
    d.batch(&[(at(1, 6), 1.5), (at(1, 12), 2.25)]);
    let with_peak = Arc::new(
        Pipeline::parse(
            "[[output]]\nname = \"HVAC1\"\nkind = \"AggDay\"\nplugin = \"daily\"\ninputs = [\"HVAC1\"]\n\
             [[output]]\nname = \"HVAC1peak\"\nkind = \"AggDay\"\nplugin = \"max\"\ninputs = [\"HVAC1\"]\nunit = \"Wh\"\n",
        )
        .unwrap(),
    );
    d.apply(&TenantBuild {
        pipeline: with_peak,
        plugins: HashMap::from([("daily".to_owned(), sum.clone()), ("max".to_owned(), max)]),
    });
    d.batch(&[
        (at(1, 18), 3.0),
        (at(2, 1), 4.0),
        (at(2, 2), 0.5),
        (at(3, 1), 1.0),
    ]);
    let peak = |day| {
        d.stored
            .get(&(format!("iot:{SITE}:HVAC1peak:AggDay"), end_of(day)))
            .copied()
    };
    assert_eq!(
        d.day_value(1),
        Some(1.5 + 2.25 + 3.0),
        "the unchanged output kept its window"
    );
    assert_eq!(
        peak(1),
        None,
        "day 1 was under way at the edit: it would miss two readings"
    );
    assert_eq!(peak(2), Some(4.0));
}

#[test]
fn a_held_window_survives_a_restart_and_is_recovered_by_a_fixed_build() {
    let host = host();
    let broken = load(&host, &fixture("misbehaving"));
    // The fix: a sum that, like the broken build, accepts the `mode` parameter (the
    // shipped `sum` refuses parameters it does not take).
    let sum = load(&host, &fixture("sum-marked-v1"));
    let failing = pipeline("mode = \"error\"");
    let mut d = Driver::new(engine(&host, build(failing.clone(), &broken)));
    d.batch(&[(at(1, 6), 1.5), (at(1, 12), 2.25)]);
    let checkpoint = d.stored_checkpoint();

    // The restarted process already has the fixed build in its folder.
    let mut restarted = engine(&host, build(failing, &sum));
    restarted.forget_partitions(&[0]);
    let archive: HashMap<String, Vec<u8>> = d.effects[0]
        .plugin_builds
        .iter()
        .map(|(hash, bytes)| (hash.clone(), bytes.to_vec()))
        .collect();
    restarted
        .restore_partition(0, Some(checkpoint.clone()), &archive)
        .unwrap();
    let mut r = Driver::new(restarted);
    r.next_offset = checkpoint.next_offset;
    r.batch(&[(at(2, 1), 4.0)]);
    assert_eq!(
        r.day_value(1),
        Some(1.5 + 2.25 + MARK_V1),
        "the held readings came back from the checkpoint"
    );
}
