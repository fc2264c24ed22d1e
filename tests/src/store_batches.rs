//! Batches made by an engine alone (no Kafka), for tests of the store on the real Redis:
//! the reference pipeline and plugins, the test's key prefix, one partition of a topic.

use std::collections::HashMap;
use std::sync::Arc;

use iot_host::engine::{Engine, EngineConfig, SourceRecord};
use iot_host::pipeline::Pipeline;
use iot_host::store::{RedisClusterStore, RedisStore, RedisStoreConfig};

use crate::fixture::TestScope;
use crate::harness::reference_plugins;

/// The input topic the checkpoints name.
pub const TOPIC: &str = "readings";
/// The partition the batches are of.
pub const PARTITION: i32 = 0;

/// An engine under the test's key prefix with [`PARTITION`] placed, empty.
pub fn engine_at_the_start(scope: &TestScope) -> Engine {
    let config = EngineConfig {
        key_prefix: scope.key_prefix(),
        key_layout: scope.key_layout(),
        input_topic: TOPIC.into(),
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(
        config,
        Arc::new(Pipeline::reference()),
        &reference_plugins(),
    )
    .expect("engine");
    engine
        .restore_partition(PARTITION, None, &HashMap::new())
        .expect("a fresh partition");
    engine
}

/// A JSON TH1 reading of `site` at `ts` (RFC 3339), at `offset` of [`PARTITION`].
pub fn th1_reading(offset: i64, site: &str, ts: &str, value: f64) -> SourceRecord {
    SourceRecord {
        partition: PARTITION,
        offset,
        key: Some(site.as_bytes().to_vec()),
        payload: format!(r#"{{"site":"{site}","sensor":"TH1","ts":"{ts}","value":{value}}}"#)
            .into_bytes(),
    }
}

/// A store on the test's Redis and key prefix, for [`TOPIC`]: one host's.
pub async fn redis_store(scope: &TestScope) -> RedisStore {
    RedisStore::connect(store_config(scope))
        .await
        .expect("Redis store")
}

/// A store on the test's Redis Cluster and key prefix, for [`TOPIC`]: one host's.
pub async fn cluster_store(scope: &TestScope) -> RedisClusterStore {
    RedisClusterStore::connect(store_config(scope))
        .await
        .expect("Redis Cluster store")
}

fn store_config(scope: &TestScope) -> RedisStoreConfig {
    RedisStoreConfig {
        url: scope.services.redis_url.clone(),
        key_prefix: scope.key_prefix(),
        topic: TOPIC.into(),
        raw_retention: None,
    }
}
