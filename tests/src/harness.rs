//! Running the real host (the library's runner over real Kafka and Redis) inside a test,
//! and producing hand-made records, all within a [`TestScope`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use iot_host::engine::{Engine, EngineConfig, LatenessPolicy, Stats};
use iot_host::pipeline::Pipeline;
use iot_host::plugin::{LoadedPlugin, PluginHost, PluginLimits};
use iot_host::publish::{KafkaPublisher, TopicNames};
use iot_host::runner::{run_observed, CommitObserver, RunOptions};
use iot_host::source::{KafkaSource, KafkaSourceConfig};
use iot_host::store::{RedisSink, RedisStoreConfig};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::fixture::{plugin_dir, TestScope};

/// The topics of one test's system.
#[derive(Debug, Clone)]
pub struct SystemTopics {
    pub readings: String,
    pub aggregates: String,
    pub late_rejected: String,
    pub dead_letter: String,
    pub plugin_errors: String,
    pub alarms: String,
}

impl SystemTopics {
    /// Creates the six topics of a test; `readings` with `partitions` partitions.
    pub async fn create(scope: &mut TestScope, partitions: i32) -> SystemTopics {
        SystemTopics {
            readings: scope.create_topic("readings", partitions).await,
            aggregates: scope.create_topic("aggregates", 1).await,
            late_rejected: scope.create_topic("late-rejected", 1).await,
            dead_letter: scope.create_topic("dead-letter", 1).await,
            plugin_errors: scope.create_topic("plugin-errors", 1).await,
            alarms: scope.create_topic("alarms", 1).await,
        }
    }

    pub fn names(&self) -> TopicNames {
        TopicNames {
            aggregates: self.aggregates.clone(),
            late_rejected: self.late_rejected.clone(),
            dead_letter: self.dead_letter.clone(),
            plugin_errors: self.plugin_errors.clone(),
            alarms: self.alarms.clone(),
        }
    }
}

/// Loads the plugins of the reference pipeline from the built plugin folder.
pub fn reference_plugins() -> HashMap<String, LoadedPlugin> {
    plugins_for(&Pipeline::reference())
}

/// Loads the plugins `pipeline` names from the built plugin folder.
pub fn plugins_for(pipeline: &Pipeline) -> HashMap<String, LoadedPlugin> {
    let host = PluginHost::new(PluginLimits::default()).expect("plugin host");
    let dir: PathBuf = plugin_dir();
    pipeline
        .plugin_names()
        .map(|name| {
            let path = dir.join(format!("{name}.wasm"));
            let plugin = host.load_file(&path).unwrap_or_else(|e| {
                panic!(
                    "cannot load {}: {e} (build the plugins with scripts/build-plugins)",
                    path.display()
                )
            });
            (name.to_owned(), plugin)
        })
        .collect()
}

/// The host's engine configuration for a test.
pub fn engine_config(scope: &TestScope, topics: &SystemTopics) -> EngineConfig {
    EngineConfig {
        default_site: format!("{}-default", scope.id),
        key_prefix: scope.key_prefix(),
        key_layout: scope.key_layout(),
        input_topic: topics.readings.clone(),
        lateness: LatenessPolicy::default(),
        ..EngineConfig::default()
    }
}

/// Runs the host (consumer group `<scope>-host`) until it has read every partition of the
/// readings topic to its end, and returns its counters.
pub async fn run_host_until_caught_up(
    scope: &TestScope,
    topics: &SystemTopics,
    batch: usize,
) -> Stats {
    run_host_observed(scope, topics, batch, &mut ()).await
}

/// [`run_host_observed`] with a pipeline of the test's own (its plugins from the built
/// plugin folder).
pub async fn run_host_observed_on<O: CommitObserver>(
    scope: &TestScope,
    topics: &SystemTopics,
    batch: usize,
    observer: &mut O,
    pipeline: Arc<Pipeline>,
) -> Stats {
    let options = RunOptions {
        max_batch: batch,
        ..RunOptions::default()
    };
    let config = engine_config(scope, topics);
    run_host_on(scope, topics, config, options, observer, pipeline)
        .await
        .0
}

/// [`run_host_until_caught_up`], telling `observer` of every durable batch.
pub async fn run_host_observed<O: CommitObserver>(
    scope: &TestScope,
    topics: &SystemTopics,
    batch: usize,
    observer: &mut O,
) -> Stats {
    let options = RunOptions {
        max_batch: batch,
        ..RunOptions::default()
    };
    run_host_with(scope, topics, options, observer).await
}

/// The real host in-process with the reference pipeline and `options` (it always exits
/// once caught up), telling `observer` of every durable batch.
pub async fn run_host_with<O: CommitObserver>(
    scope: &TestScope,
    topics: &SystemTopics,
    options: RunOptions,
    observer: &mut O,
) -> Stats {
    run_host_configured(
        scope,
        topics,
        engine_config(scope, topics),
        options,
        observer,
    )
    .await
}

/// [`run_host_with`] with an engine configuration of the test's own (e.g. `stamps`).
pub async fn run_host_configured<O: CommitObserver>(
    scope: &TestScope,
    topics: &SystemTopics,
    config: EngineConfig,
    options: RunOptions,
    observer: &mut O,
) -> Stats {
    run_host_timed(scope, topics, config, options, observer)
        .await
        .0
}

/// [`run_host_configured`], also returning the instant the host had caught up (everything
/// durable), before its clients were closed: closing a Kafka consumer (leaving the group)
/// takes a while that is not the host's drain.
pub async fn run_host_timed<O: CommitObserver>(
    scope: &TestScope,
    topics: &SystemTopics,
    config: EngineConfig,
    options: RunOptions,
    observer: &mut O,
) -> (Stats, std::time::Instant) {
    let reference = Arc::new(Pipeline::reference());
    run_host_on(scope, topics, config, options, observer, reference).await
}

async fn run_host_on<O: CommitObserver>(
    scope: &TestScope,
    topics: &SystemTopics,
    config: EngineConfig,
    options: RunOptions,
    observer: &mut O,
    pipeline: Arc<Pipeline>,
) -> (Stats, std::time::Instant) {
    let plugins = plugins_for(&pipeline);
    let mut engine = Engine::new(config, pipeline, &plugins).expect("engine");
    let services = &scope.services;
    let mut source = KafkaSource::connect(KafkaSourceConfig {
        bootstrap: services.kafka_bootstrap.clone(),
        group: format!("{}-host", scope.id),
        topic: topics.readings.clone(),
        batch_linger: iot_host::source::DEFAULT_BATCH_LINGER,
        instance_id: None,
        session_timeout: iot_host::source::DEFAULT_SESSION_TIMEOUT,
    })
    .expect("Kafka source");
    let mut store = RedisSink::connect(
        RedisStoreConfig {
            url: services.redis_url.clone(),
            key_prefix: scope.key_prefix(),
            topic: topics.readings.clone(),
            raw_retention: None,
        },
        scope.key_layout(),
    )
    .await
    .expect("Redis store");
    let mut publisher =
        KafkaPublisher::connect(&services.kafka_bootstrap, topics.names()).expect("publisher");
    let options = RunOptions {
        exit_when_caught_up: true,
        ..options
    };
    let run = run_observed(
        &mut engine,
        &mut source,
        &mut store,
        &mut publisher,
        observer,
        &options,
        std::future::pending(),
    );
    let stats = tokio::time::timeout(Duration::from_secs(600), run)
        .await
        .expect("the host caught up within 10 minutes")
        .expect("the host ran without error");
    (stats, std::time::Instant::now())
}

/// Sends payloads to one partition of a topic, in order, keyed by `key`.
pub async fn produce(bootstrap: &str, topic: &str, partition: i32, key: &str, payloads: &[String]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("message.max.bytes", "2000000")
        .create()
        .expect("producer");
    for payload in payloads {
        producer
            .send(
                FutureRecord::to(topic)
                    .partition(partition)
                    .key(key)
                    .payload(payload.as_str()),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("record delivered");
    }
}
