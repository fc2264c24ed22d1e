//! The loop that wires the engine to its source and sinks, batch by batch:
//! read records → engine → publish topic records (acked) → commit samples and checkpoints
//! to the store (one transaction) → commit source offsets.
//!
//! The store's checkpoints decide where each partition resumes, not the consumer group's
//! committed offsets: when a partition's first records start past its checkpoint (or past
//! the start of the topic, with no checkpoint at all), the store lost data the group had
//! already moved past, and the runner rewinds the partition to rebuild it. The same
//! happens to every partition in memory when the store reports lost data mid-run.

use std::time::{Duration, Instant};

use crate::engine::SourceRecord;
use crate::engine::{Effects, Engine, Stats};
use crate::publish::Publisher;
use crate::reload::{TenantUpdate, Updates};
use crate::source::{Source, SourceEvent};
use crate::store::{Store, StoreError};

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
                make_durable_or_rebuild(&effects, engine, source, store, publisher, observer).await?;
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
            SourceEvent::Records(mut records) => {
                let mut rewound = Vec::new();
                for partition in unknown_partitions(engine, &records) {
                    let checkpoint = store.load_checkpoint(partition).await?;
                    let resume_at = checkpoint.as_ref().map(|cp| cp.next_offset);
                    if rewind_if_behind(source, partition, resume_at, &records).await? {
                        rewound.push(partition);
                        continue;
                    }
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
                if !rewound.is_empty() {
                    records.retain(|r| !rewound.contains(&r.partition));
                }
                for record in &records {
                    engine.process(record);
                }
                let effects = engine.finish_batch();
                make_durable_or_rebuild(&effects, engine, source, store, publisher, observer)
                    .await?;
            }
            SourceEvent::Revoked(partitions) => engine.forget_partitions(&partitions),
            SourceEvent::Assigned(partitions) => {
                for partition in partitions {
                    if !engine.knows_partition(partition) {
                        place_at_checkpoint(source, store, partition).await?;
                    }
                }
            }
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

/// [`make_durable`]; if the store lost data meanwhile, the batch is dropped and every
/// partition in memory is rebuilt from what the store still holds (see the module doc).
async fn make_durable_or_rebuild<S: Source, T: Store, P: Publisher, O: CommitObserver>(
    effects: &Effects,
    engine: &mut Engine,
    source: &mut S,
    store: &mut T,
    publisher: &mut P,
    observer: &mut O,
) -> anyhow::Result<()> {
    let Err(error) = make_durable(effects, source, store, publisher, observer).await else {
        return Ok(());
    };
    let Some(lost @ StoreError::DataLost { .. }) = error.downcast_ref::<StoreError>() else {
        return Err(error);
    };
    tracing::error!("{lost}");
    let partitions = engine.partitions();
    engine.forget_partitions(&partitions);
    for partition in partitions {
        let resume_at = match store.load_checkpoint(partition).await? {
            Some(cp) => cp.next_offset,
            None => source.first_offset(partition).await?,
        };
        tracing::warn!(
            partition,
            offset = resume_at,
            "rebuilding partition: reading it again from here"
        );
        source.rewind(partition, resume_at).await?;
    }
    Ok(())
}

/// Moves a newly assigned partition to where the store says it resumes: its checkpoint, or
/// the start of the topic when there is none. Says so when that is not where the consumer
/// group left off (the store lost data, or was replaced, while Kafka kept the group's
/// offsets): the partition is then rebuilt, not silently continued.
async fn place_at_checkpoint<S: Source, T: Store>(
    source: &mut S,
    store: &mut T,
    partition: i32,
) -> anyhow::Result<()> {
    let checkpoint = store
        .load_checkpoint(partition)
        .await?
        .map(|cp| cp.next_offset);
    let committed = source.committed_offset(partition).await?;
    let resume_at = match checkpoint {
        Some(offset) => offset,
        None => source.first_offset(partition).await?,
    };
    match (checkpoint, committed) {
        (None, Some(group)) if group > resume_at => tracing::warn!(
            partition,
            group_offset = group,
            topic_start = resume_at,
            "the store has no checkpoint for this partition, but the consumer group had read it up to here: the store lost its data (a Redis without persistence restarted, another server, or a new key prefix); rebuilding the partition from the start of the topic"
        ),
        (Some(offset), Some(group)) if group > offset => tracing::warn!(
            partition,
            checkpoint = offset,
            group_offset = group,
            "the store's checkpoint is behind the consumer group's offset: the store lost its newest writes (restored from an older snapshot?); rebuilding the partition from the checkpoint"
        ),
        _ => {}
    }
    source.rewind(partition, resume_at).await
}

/// For a partition about to be restored: if its first records in `records` start past
/// where the store says it resumes (`resume_at`; the start of the topic when the store has
/// no checkpoint), rewinds the source there and returns true (the caller drops the
/// partition's records of this batch). Records the topic no longer holds (retention)
/// cannot be read again: then it says so and returns false.
async fn rewind_if_behind<S: Source>(
    source: &mut S,
    partition: i32,
    resume_at: Option<i64>,
    records: &[SourceRecord],
) -> anyhow::Result<bool> {
    let Some(first_read) = records
        .iter()
        .find(|r| r.partition == partition)
        .map(|r| r.offset)
    else {
        return Ok(false);
    };
    if resume_at.is_some_and(|offset| first_read <= offset) {
        return Ok(false);
    }
    let topic_start = source.first_offset(partition).await?;
    let target = resume_at.unwrap_or(topic_start).max(topic_start);
    if first_read <= target {
        if resume_at.is_some_and(|offset| offset < topic_start) {
            tracing::error!(
                partition,
                checkpoint = resume_at,
                topic_start,
                "the checkpoint is older than the oldest record the topic keeps (retention): records in between are lost for good; resuming at {first_read}"
            );
        }
        return Ok(false);
    }
    match resume_at {
        Some(offset) => tracing::warn!(
            partition,
            checkpoint = offset,
            group_position = first_read,
            "the store's checkpoint is behind the consumer group's position: the store lost its newest writes (restored from an older snapshot?); rebuilding the partition from the checkpoint"
        ),
        None => tracing::warn!(
            partition,
            group_position = first_read,
            topic_start,
            "the store has no checkpoint for this partition, but the consumer group had read it up to here: the store lost its data (a Redis without persistence restarted, another server, or a new key prefix); rebuilding the partition from the start of the topic"
        ),
    }
    source.rewind(partition, target).await?;
    Ok(true)
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
