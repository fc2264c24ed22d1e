//! The loop that wires the engine to its source and sinks, batch by batch:
//! read records → engine → publish topic records (acked) → commit samples and checkpoints
//! to the store (one transaction) → commit source offsets.

use std::time::{Duration, Instant};

use crate::engine::{Effects, Engine, Stats};
use crate::publish::Publisher;
use crate::reload::{TenantUpdate, Updates};
use crate::source::{Source, SourceEvent};
use crate::store::Store;

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub max_batch: usize,
    /// Return once every assigned partition is read to its end (tests, benches, backfills).
    pub exit_when_caught_up: bool,
    /// Log a progress line this often.
    pub log_every: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            max_batch: 5000,
            exit_when_caught_up: false,
            log_every: Duration::from_secs(10),
        }
    }
}

/// Told of every batch once it is durable (the live page listens here).
pub trait CommitObserver: Send {
    fn committed(&mut self, effects: &Effects);
}

/// No observer.
impl CommitObserver for () {
    fn committed(&mut self, _effects: &Effects) {}
}

/// Runs until the source ends, the shutdown future resolves, or (optionally) the source is
/// caught up. Returns the engine's counters.
pub async fn run<S: Source, T: Store, P: Publisher>(
    engine: &mut Engine,
    source: &mut S,
    store: &mut T,
    publisher: &mut P,
    options: &RunOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Stats> {
    run_observed(engine, source, store, publisher, &mut (), options, shutdown).await
}

/// [`run_live`] without updates: the tenants keep the builds they started with.
pub async fn run_observed<S: Source, T: Store, P: Publisher, O: CommitObserver>(
    engine: &mut Engine,
    source: &mut S,
    store: &mut T,
    publisher: &mut P,
    observer: &mut O,
    options: &RunOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Stats> {
    let mut updates = Updates::none();
    run_live(
        engine,
        source,
        store,
        publisher,
        observer,
        &mut updates,
        options,
        shutdown,
    )
    .await
}

/// [`run`], telling `observer` of every durable batch and applying tenants' new builds
/// from `updates` between batches (hot swap).
#[allow(clippy::too_many_arguments)]
pub async fn run_live<S: Source, T: Store, P: Publisher, O: CommitObserver>(
    engine: &mut Engine,
    source: &mut S,
    store: &mut T,
    publisher: &mut P,
    observer: &mut O,
    updates: &mut Updates,
    options: &RunOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Stats> {
    tokio::pin!(shutdown);
    let mut last_log = Instant::now();
    loop {
        let event = tokio::select! {
            biased;
            _ = &mut shutdown => {
                tracing::info!("shutting down: the last batch is stored and its offsets committed");
                break;
            }
            update = updates.recv() => {
                let detected = apply_update(engine, update);
                let effects = engine.finish_batch();
                make_durable(&effects, source, store, publisher, observer).await?;
                if let Some(detected) = detected {
                    tracing::info!(
                        visible_after_ms = detected.elapsed().as_millis() as u64,
                        "new build live: windows it changed are stored, and every batch from now on uses it"
                    );
                }
                continue;
            }
            event = source.next(options.max_batch) => event?,
        };
        match event {
            SourceEvent::Records(records) => {
                for partition in unknown_partitions(engine, &records) {
                    let checkpoint = store.load_checkpoint(partition).await?;
                    let mut archived = std::collections::HashMap::new();
                    if let Some(cp) = &checkpoint {
                        for hash in engine.missing_builds(cp) {
                            if let Some(bytes) = store.load_plugin_build(&hash).await? {
                                archived.insert(hash, bytes);
                            }
                        }
                    }
                    if let Some(cp) = &checkpoint {
                        tracing::info!(
                            partition,
                            next_offset = cp.next_offset,
                            sites = cp.sites.len(),
                            "resuming partition from its checkpoint"
                        );
                    }
                    engine.restore_partition(partition, checkpoint, &archived)?;
                }
                for record in &records {
                    engine.process(record);
                }
                let effects = engine.finish_batch();
                make_durable(&effects, source, store, publisher, observer).await?;
            }
            SourceEvent::Revoked(partitions) => engine.forget_partitions(&partitions),
            SourceEvent::CaughtUp => {
                if options.exit_when_caught_up {
                    tracing::info!("caught up with every assigned partition");
                    break;
                }
            }
            SourceEvent::End => break,
        }
        if last_log.elapsed() >= options.log_every {
            log_progress(engine.stats());
            last_log = Instant::now();
        }
    }
    log_progress(engine.stats());
    Ok(engine.stats().clone())
}

/// Records first (at least once), then samples and checkpoints in one transaction, then
/// the source offsets; then the observer hears of it.
async fn make_durable<S: Source, T: Store, P: Publisher, O: CommitObserver>(
    effects: &Effects,
    source: &mut S,
    store: &mut T,
    publisher: &mut P,
    observer: &mut O,
) -> anyhow::Result<()> {
    if effects.is_empty() {
        return Ok(());
    }
    publisher.publish(&effects.records).await?;
    store.commit(effects).await?;
    let offsets: Vec<(i32, i64)> = effects
        .checkpoints
        .iter()
        .map(|c| (c.partition, c.next_offset))
        .collect();
    source.commit(&offsets).await?;
    observer.committed(effects);
    Ok(())
}

/// Applies a tenant's new build (or records its refusal); returns when its first file
/// change was seen, for the swap-to-visible latency.
fn apply_update(engine: &mut Engine, update: TenantUpdate) -> Option<Instant> {
    match update {
        TenantUpdate::Build {
            tenant,
            build,
            detected,
            built_in,
        } => {
            let name = engine.tenant_names()[tenant].to_owned();
            match engine.apply(tenant, &build) {
                Ok(report) => {
                    tracing::info!(
                        tenant = %name,
                        swapped = ?report.swapped,
                        added = ?report.added,
                        removed = ?report.removed,
                        redefined = ?report.redefined,
                        builds_loaded = report.builds_loaded,
                        built_in_ms = built_in.as_millis() as u64,
                        "applied a new build (swapped: true = open windows carried over, false = they finish on the old build)"
                    );
                    Some(detected)
                }
                Err(e) => {
                    tracing::error!(tenant = %name, "new build refused, the tenant keeps its current one: {e:#}");
                    engine.refused(tenant, "build", &format!("{e:#}"));
                    None
                }
            }
        }
        TenantUpdate::Refused {
            tenant,
            what,
            error,
        } => {
            engine.refused(tenant, &what, &error);
            None
        }
    }
}

fn unknown_partitions(engine: &Engine, records: &[crate::engine::SourceRecord]) -> Vec<i32> {
    let mut partitions: Vec<i32> = records
        .iter()
        .map(|r| r.partition)
        .filter(|&p| !engine.knows_partition(p))
        .collect();
    partitions.sort_unstable();
    partitions.dedup();
    partitions
}

fn log_progress(stats: &Stats) {
    tracing::info!(
        records = stats.records,
        on_time = stats.on_time,
        late_accepted = stats.late_accepted,
        late_rejected = stats.late_rejected,
        dead_letters = stats.dead_letter_total(),
        outputs = stats.outputs_emitted,
        plugin_errors = stats.plugin_errors,
        skipped_replayed = stats.skipped_replayed,
        "progress"
    );
}
