//! `iot-host`: wires the real Kafka and Redis to the engine. Everything else is in the lib.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use iot_host::config::{Cli, HostConfig};
use iot_host::engine::{Engine, EngineConfig, LatenessPolicy};
use iot_host::live::LiveHub;
use iot_host::pipeline::Pipeline;
use iot_host::plugin::{LoadedPlugin, PluginHost, PluginLimits};
use iot_host::publish::{KafkaPublisher, TopicNames};
use iot_host::runner::{run_observed, RunOptions};
use iot_host::source::{KafkaSource, KafkaSourceConfig};
use iot_host::store::{RedisStore, RedisStoreConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,librdkafka=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = HostConfig::from_cli(Cli::parse())?;
    let pipeline = Arc::new(match &config.pipeline {
        Some(path) => Pipeline::load(path)?,
        None => Pipeline::reference(),
    });
    let plugin_host = PluginHost::new(PluginLimits::default())?;
    let plugins = load_plugins(&plugin_host, &config, &pipeline)?;
    let mut engine = Engine::new(engine_config(&config), pipeline, &plugins)?;
    let mut store = RedisStore::connect(RedisStoreConfig {
        url: config.redis.clone(),
        key_prefix: config.key_prefix.clone(),
        topic: config.readings_topic.clone(),
    })
    .await?;
    let mut publisher = KafkaPublisher::connect(&config.kafka, topic_names(&config))?;
    let mut source = KafkaSource::connect(KafkaSourceConfig {
        bootstrap: config.kafka.clone(),
        group: config.group.clone(),
        topic: config.readings_topic.clone(),
        batch_linger: std::time::Duration::from_millis(20),
        instance_id: config.instance_id.clone(),
    })?;
    tracing::info!(kafka = %config.kafka, group = %config.group, topic = %config.readings_topic, redis = %config.redis, "host running; Ctrl-C stops it");
    let options = RunOptions {
        max_batch: config.batch_size,
        exit_when_caught_up: config.exit_when_caught_up,
        ..RunOptions::default()
    };
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let mut live = LiveHub::new();
    if let Some(addr) = config.http {
        let (url, prefix, sender) = (
            config.redis.clone(),
            config.key_prefix.clone(),
            live.sender(),
        );
        tokio::spawn(async move {
            if let Err(e) = iot_host::live::server::serve(addr, &url, prefix, sender).await {
                tracing::error!("{e:#}");
            }
        });
    }
    let stats = run_observed(
        &mut engine,
        &mut source,
        &mut store,
        &mut publisher,
        &mut live,
        &options,
        shutdown,
    )
    .await?;
    println!(
        "{}",
        serde_json::json!({
            "records": stats.records,
            "on_time": stats.on_time,
            "late_accepted": stats.late_accepted,
            "late_rejected": stats.late_rejected,
            "dead_letters": stats.dead_letters,
            "outputs_emitted": stats.outputs_emitted,
            "plugin_errors": stats.plugin_errors,
            "skipped_replayed": stats.skipped_replayed,
        })
    );
    Ok(())
}

fn engine_config(config: &HostConfig) -> EngineConfig {
    EngineConfig {
        default_site: config.default_site.clone(),
        max_record_bytes: config.max_record_bytes,
        lateness: LatenessPolicy {
            out_of_orderness_ms: config.out_of_orderness.as_millis() as i64,
            allowed_lateness_ms: config.allowed_lateness.as_millis() as i64,
        },
        key_prefix: config.key_prefix.clone(),
        input_topic: config.readings_topic.clone(),
    }
}

fn topic_names(config: &HostConfig) -> TopicNames {
    TopicNames {
        aggregates: config.aggregates_topic.clone(),
        late_rejected: config.late_rejected_topic.clone(),
        dead_letter: config.dead_letter_topic.clone(),
        plugin_errors: config.plugin_errors_topic.clone(),
    }
}

fn load_plugins(
    host: &PluginHost,
    config: &HostConfig,
    pipeline: &Pipeline,
) -> anyhow::Result<HashMap<String, LoadedPlugin>> {
    let mut plugins = HashMap::new();
    for name in pipeline.plugin_names() {
        let path = config.plugins.join(format!("{name}.wasm"));
        let plugin = host.load_file(&path).with_context(|| {
            format!(
                "loading plugin {name:?} from {} (build plugins with scripts/build-plugins)",
                path.display()
            )
        })?;
        plugins.insert(name.to_owned(), plugin);
    }
    Ok(plugins)
}
