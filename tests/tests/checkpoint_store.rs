//! Checkpoints in the real Redis: a partition's checkpoint is a hash that each batch
//! updates with only the sites it changed, and reading it back gives the engine's whole
//! state; a checkpoint a host wrote before this form (a JSON string) is read, and replaced
//! by the next batch.

use std::collections::HashMap;

use iot_host::engine::checkpoint_format::{site_field, StoredFields, HEAD_FIELD};
use iot_host::store::Store;
use system_tests::fixture::TestScope;
use system_tests::store_batches::{
    engine_at_the_start as engine, redis_store as store, th1_reading, PARTITION, TOPIC,
};

/// 2020-01-01T00:15:00Z and the steps after it: readings of one day.
const STEPS: [&str; 3] = [
    "2020-01-01T00:15:00Z",
    "2020-01-01T00:30:00Z",
    "2020-01-01T00:45:00Z",
];

async fn stored_fields(conn: &mut iot_host::store::RedisReader, key: &str) -> StoredFields {
    let fields: Vec<(String, Vec<u8>)> = redis::cmd("HGETALL")
        .arg(key)
        .query_async(conn)
        .await
        .expect("HGETALL");
    StoredFields::new(fields)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_batch_rewrites_only_its_sites_and_the_hash_reads_back_as_the_whole_state() {
    let scope = TestScope::new("checkpoint_deltas");
    let key = format!("{}_checkpoint:{TOPIC}:{PARTITION}", scope.key_prefix());
    let mut conn = scope.redis_conn().await;
    let mut store = store(&scope).await;
    assert!(store.load_checkpoint(PARTITION).await.unwrap().is_none());
    let mut engine = engine(&scope);

    for (offset, site) in [(0, "north"), (1, "south")] {
        engine.process(&th1_reading(offset, site, STEPS[0], 20.0));
    }
    store
        .commit(&engine.finish_batch())
        .await
        .expect("first batch");
    let north_before: Vec<u8> = redis::cmd("HGET")
        .arg(&key)
        .arg(site_field("north"))
        .query_async(&mut conn)
        .await
        .unwrap();

    // Only south reads: the batch's write carries south alone, north's field stays.
    engine.process(&th1_reading(2, "south", STEPS[1], 21.0));
    let effects = engine.finish_batch();
    let write = &effects.checkpoints[0];
    assert_eq!(
        write
            .sites
            .iter()
            .map(|(s, _)| s.as_str())
            .collect::<Vec<_>>(),
        vec!["south"]
    );
    store.commit(&effects).await.expect("second batch");
    let north_after: Vec<u8> = redis::cmd("HGET")
        .arg(&key)
        .arg(site_field("north"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(north_after, north_before);

    let read_back = stored_fields(&mut conn, &key)
        .await
        .decode(PARTITION)
        .unwrap();
    assert_eq!(read_back, Some(engine.partition_checkpoint(PARTITION)));
    assert_eq!(
        store.load_checkpoint(PARTITION).await.unwrap(),
        Some(engine.partition_checkpoint(PARTITION)),
        "the store reads the same"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_checkpoint_of_an_earlier_host_is_read_and_replaced_by_the_next_batch() {
    let scope = TestScope::new("checkpoint_legacy_json");
    let key = format!("{}_checkpoint:{TOPIC}:{PARTITION}", scope.key_prefix());
    let mut conn = scope.redis_conn().await;

    // An earlier host's checkpoint after two readings: the same types, as a JSON string.
    let mut earlier = engine(&scope);
    earlier.process(&th1_reading(0, "north", STEPS[0], 20.0));
    earlier.process(&th1_reading(1, "north", STEPS[1], 22.0));
    earlier.finish_batch();
    let json = serde_json::to_string(&earlier.partition_checkpoint(PARTITION)).unwrap();
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg(&json)
        .query_async(&mut conn)
        .await
        .unwrap();

    let mut store = store(&scope).await;
    let loaded = store
        .load_checkpoint(PARTITION)
        .await
        .expect("the JSON checkpoint is read")
        .expect("there is one");
    assert_eq!(loaded, earlier.partition_checkpoint(PARTITION));

    // A host resumes from it; its first batch replaces the string with the hash.
    let mut resumed = engine(&scope);
    resumed.forget_partitions(&[PARTITION]);
    resumed
        .restore_partition(PARTITION, Some(loaded), &HashMap::new())
        .unwrap();
    resumed.process(&th1_reading(2, "north", STEPS[2], 24.0));
    store
        .commit(&resumed.finish_batch())
        .await
        .expect("a batch");
    let kind: String = redis::cmd("TYPE")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(kind, "hash");
    let head: Option<Vec<u8>> = redis::cmd("HGET")
        .arg(&key)
        .arg(HEAD_FIELD)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(head.is_some(), "the hash has its head");
    assert_eq!(
        store.load_checkpoint(PARTITION).await.unwrap(),
        Some(resumed.partition_checkpoint(PARTITION)),
        "the replaced checkpoint holds all three readings' state"
    );
}

/// `--raw-retention`: raw series are created with it (RedisTimeSeries' RETENTION), every
/// other kind with none, and a restarted host sets it again on the series it finds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_series_get_the_raw_retention_and_every_other_kind_keeps_everything() {
    use iot_host::engine::{Effects, SeriesDef, StoredSample};
    use iot_host::store::{RedisStore, RedisStoreConfig};
    use iot_protocol::{Kind, SeriesName};

    const FOUR_DAYS: std::time::Duration = std::time::Duration::from_secs(4 * 86_400);
    let scope = TestScope::new("raw_retention");
    let site = format!("{}-s1", scope.id);
    let defs: Vec<SeriesDef> = [(Kind::Raw, 0), (Kind::AggDay, 1), (Kind::LateRej, 2)]
        .into_iter()
        .map(|(kind, id)| {
            let name = SeriesName::new(site.as_str(), "TH1", kind);
            SeriesDef {
                id,
                key: name.key(&scope.key_prefix()),
                name,
                unit: "degC".into(),
            }
        })
        .collect();
    let connect = |retention| {
        RedisStore::connect(RedisStoreConfig {
            url: scope.services.redis_url.clone(),
            key_prefix: scope.key_prefix(),
            topic: "readings".into(),
            raw_retention: retention,
        })
    };
    let effects = Effects {
        new_series: defs.clone(),
        samples: vec![StoredSample {
            series: 0,
            partition: 0,
            ts_ms: 1_577_837_700_000,
            value: 21.5,
        }],
        ..Effects::default()
    };
    let mut conn = scope.redis_conn().await;
    let retention = |key: String| {
        let mut conn = conn.clone();
        async move {
            let info: Vec<redis::Value> = redis::cmd("TS.INFO")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap();
            let at = info
                .iter()
                .position(|v| {
                    matches!(v, redis::Value::SimpleString(s) if s == "retentionTime")
                        || matches!(v, redis::Value::BulkString(b) if b == b"retentionTime")
                })
                .expect("TS.INFO has retentionTime");
            redis::from_redis_value::<i64>(info[at + 1].clone()).unwrap()
        }
    };

    connect(Some(FOUR_DAYS))
        .await
        .unwrap()
        .commit(&effects)
        .await
        .unwrap();
    assert_eq!(retention(defs[0].key.clone()).await, 4 * 86_400_000, "raw");
    assert_eq!(retention(defs[1].key.clone()).await, 0, "AggDay");
    assert_eq!(retention(defs[2].key.clone()).await, 0, "LateRej");

    // A host restarted without a retention keeps raw series forever again.
    connect(None).await.unwrap().commit(&effects).await.unwrap();
    assert_eq!(
        retention(defs[0].key.clone()).await,
        0,
        "raw, after a restart"
    );
    let _ = redis::cmd("DEL")
        .arg(defs.iter().map(|d| d.key.as_str()).collect::<Vec<_>>())
        .query_async::<()>(&mut conn)
        .await;
}
