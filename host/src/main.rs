//! `iot-host`: wires the real Kafka and Redis to the engine. Everything else is in the lib.

use iot_host::config::{Cli, Command, HostConfig, PluginCommand};
use iot_host::engine::{Engine, EngineConfig, LatenessPolicy, TenantSetup};
use iot_host::live::LiveHub;
use iot_host::publish::{KafkaPublisher, TopicNames};
use iot_host::reload::{watch_tenants, TenantLoader, Updates};
use iot_host::runner::{run_live, RunOptions};
use iot_host::source::{KafkaSource, KafkaSourceConfig};
use iot_host::store::{detect_key_layout, RedisSink, RedisStoreConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,librdkafka=warn".into())
                // rdkafka's consumer logs only this at ERROR: "failed to close consumer queue
                // on drop", when the source replaces a consumer that a broker restart left
                // fenced; the source itself says so, once, at WARN.
                .add_directive(
                    "rdkafka::consumer::base_consumer=off"
                        .parse()
                        .expect("a directive"),
                ),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a log file gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let (mut cli, matches) = Cli::parse_with_sources();
    match cli.command.take() {
        Some(Command::Validate(args)) => {
            let all_ok = iot_host::validate::validate(&args)?;
            std::process::exit(if all_ok { 0 } else { 1 });
        }
        Some(Command::Repartition(args)) => return repartition((*args).into_config()?).await,
        Some(Command::Tap(args)) => {
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let on_ctrl_c = stop.clone();
            tokio::spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    on_ctrl_c.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            });
            tokio::task::spawn_blocking(move || iot_host::tap::run(&args, &stop)).await??;
            return Ok(());
        }
        Some(Command::Plugin(PluginCommand::Test(args))) => {
            let all_ok = iot_host::plugin_test::run(&args)?;
            std::process::exit(if all_ok { 0 } else { 1 });
        }
        Some(Command::Plugin(PluginCommand::New(args))) => {
            iot_host::plugin_new::run(&args)?;
            return Ok(());
        }
        None => {}
    }
    let config = HostConfig::from_cli(cli, &matches)?;
    let mut loaders = config
        .tenant_specs()?
        .into_iter()
        .map(TenantLoader::new)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut setups = Vec::with_capacity(loaders.len());
    for loader in &mut loaders {
        let build = loader.load().map_err(|e| {
            e.context(format!(
                "tenant {:?}: its pipeline and plugins do not load",
                loader.spec.name
            ))
        })?;
        setups.push(TenantSetup {
            name: loader.spec.name.clone(),
            sites: loader.spec.sites.clone(),
            plugin_host: loader.plugin_host().clone(),
            build,
        });
    }
    let builds = setups.iter().map(|s| s.build.clone()).collect();
    // One Redis or a Redis Cluster: the keys are laid out for what REDIS_URL points at.
    let key_layout = detect_key_layout(&config.redis).await?;
    let mut engine = Engine::with_tenants(engine_config(&config, key_layout), setups)?;
    // Hot swap: keep the watcher alive for the whole run.
    let (_watch, mut updates) = if config.watch {
        let (watch, updates) = watch_tenants(loaders, builds)?;
        (Some(watch), updates)
    } else {
        (None, Updates::none())
    };
    let mut store = RedisSink::connect(
        RedisStoreConfig {
            url: config.redis.clone(),
            key_prefix: config.key_prefix.clone(),
            topic: config.readings_topic.clone(),
            raw_retention: config.checked_raw_retention()?,
        },
        key_layout,
    )
    .await?;
    let mut publisher = KafkaPublisher::connect(&config.kafka, topic_names(&config))?;
    let mut source = KafkaSource::connect(KafkaSourceConfig {
        bootstrap: config.kafka.clone(),
        group: config.group.clone(),
        topic: config.readings_topic.clone(),
        batch_linger: iot_host::source::DEFAULT_BATCH_LINGER,
        instance_id: config.instance_id.clone(),
        session_timeout: config.session_timeout,
    })?;
    tracing::info!(kafka = %config.kafka, group = %config.group, topic = %config.readings_topic, redis = %config.redis, redis_cluster = (key_layout == iot_protocol::series::KeyLayout::Cluster), "host running; Ctrl-C stops it");
    let options = RunOptions {
        max_batch: config.batch_size,
        max_in_flight: config.max_batches_in_flight,
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
        let commands = iot_host::live::commands::CommandsConfig {
            bootstrap: config.kafka.clone(),
            commands_topic: config.commands_topic.clone(),
            acks_topic: config.command_acks_topic.clone(),
        };
        tokio::spawn(async move {
            let served = iot_host::live::server::serve(addr, &url, prefix, sender, Some(commands));
            if let Err(e) = served.await {
                tracing::error!("{e:#}");
            }
        });
    }
    let stats = run_live(
        &mut engine,
        &mut source,
        &mut store,
        &mut publisher,
        &mut live,
        &mut updates,
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
            "skipped_fenced": stats.skipped_fenced,
        })
    );
    Ok(())
}

/// `iot-host repartition`: the stage runs on a thread of its own (its Kafka calls block);
/// Ctrl-C or SIGTERM asks it to commit what it handed on and stop.
async fn repartition(config: iot_host::repartition::RepartitionConfig) -> anyhow::Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let worker = {
        let stop = stop.clone();
        std::thread::spawn(move || iot_host::repartition::run(&config, &stop))
    };
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut finished = tokio::task::spawn_blocking(move || worker.join());
    let joined = tokio::select! {
        joined = &mut finished => joined,
        _ = tokio::signal::ctrl_c() => { stop.store(true, Ordering::Relaxed); finished.await }
        _ = terminate.recv() => { stop.store(true, Ordering::Relaxed); finished.await }
    };
    let counts = joined?.map_err(|_| anyhow::anyhow!("the repartition stage panicked"))??;
    println!(
        "{}",
        serde_json::json!({
            "consumed": counts.consumed,
            "readings": counts.readings,
            "dead_letters": counts.dead_letters,
            "transactions": counts.transactions,
            "aborted": counts.aborted,
        })
    );
    Ok(())
}

fn engine_config(config: &HostConfig, key_layout: iot_protocol::series::KeyLayout) -> EngineConfig {
    EngineConfig {
        default_site: config.default_site.clone(),
        max_record_bytes: config.max_record_bytes,
        lateness: LatenessPolicy {
            out_of_orderness_ms: config.out_of_orderness.as_millis() as i64,
            allowed_lateness_ms: config.allowed_lateness.as_millis() as i64,
        },
        key_prefix: config.key_prefix.clone(),
        key_layout,
        input_topic: config.readings_topic.clone(),
        stamps: config.stamps,
    }
}

fn topic_names(config: &HostConfig) -> TopicNames {
    TopicNames {
        aggregates: config.aggregates_topic.clone(),
        late_rejected: config.late_rejected_topic.clone(),
        dead_letter: config.dead_letter_topic.clone(),
        plugin_errors: config.plugin_errors_topic.clone(),
        alarms: config.alarms_topic.clone(),
    }
}
