//! The batch loop, in two sides that run concurrently:
//!
//! - the fold side ([`run_live`]): read a batch from the source → engine (decode, windows,
//!   plugin calls) → hand its effects to the durable side → next batch; it also commits
//!   source offsets once the durable side reports a batch durable, and applies hot swaps;
//! - the durable side ([`durable`]): publish the batch's topic records (acked) → samples
//!   and checkpoints in one store transaction → report it durable; batch after batch, in
//!   order.
//!
//! At most `max_in_flight` batches wait between the two (backpressure), so folding batch
//! N+1 never waits for batch N to become durable, and memory stays flat however large the
//! backlog. [`recovery`] decides where a partition resumes and rebuilds what the store
//! lost. Where the time goes is measured per stage (`crate::profile`).

mod durable;
mod recovery;

pub use durable::DEFAULT_MAX_IN_FLIGHT;

use std::time::{Duration, Instant};

use crate::engine::{Effects, Engine, SourceRecord, Stats};
use crate::profile::Stage;
use crate::publish::Publisher;
use crate::reload::{TenantUpdate, Updates};
use crate::source::{Source, SourceEvent};
use crate::store::{Store, StoreError};
use durable::{Durability, Report};

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub max_batch: usize,
    /// Return once every assigned partition is read to its end (tests, benches, backfills).
    pub exit_when_caught_up: bool,
    /// Log a progress line this often.
    pub log_every: Duration,
    /// Batches that may wait for the durable side before the fold side waits too. 0: each
    /// batch is durable before the next is read (no overlap; for comparisons).
    pub max_in_flight: usize,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            max_batch: 5000,
            exit_when_caught_up: false,
            log_every: Duration::from_secs(10),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
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
    let (durability, ends) = durable::channel(options.max_in_flight);
    let durable_side = durable::run(ends, store, publisher, observer);
    let fold_side = fold(engine, source, durability, updates, options, shutdown);
    tokio::pin!(durable_side, fold_side);
    tokio::select! {
        folded = &mut fold_side => {
            // The fold side flushed before it ended, and dropped its end of the channel:
            // the durable side has nothing left and ends too.
            let written = durable_side.await;
            written?;
            folded
        }
        written = &mut durable_side => {
            written?;
            anyhow::bail!("the durable side of the pipeline ended before the fold side")
        }
    }
}

/// Records the engine takes between two turns of the durable side (which runs in the same
/// task, so it only moves when the fold side awaits).
const ACCEPT_CHUNK: usize = 512;

/// What the fold side waited for.
enum Next {
    Shutdown,
    Report(Report),
    Update(TenantUpdate),
    Source(SourceEvent),
}

async fn fold<S: Source>(
    engine: &mut Engine,
    source: &mut S,
    mut durability: Durability,
    updates: &mut Updates,
    options: &RunOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Stats> {
    tokio::pin!(shutdown);
    let mut last_log = Instant::now();
    loop {
        let next = {
            let _waiting = Stage::Read.start();
            tokio::select! {
                biased;
                _ = &mut shutdown => Next::Shutdown,
                report = durability.next_report() => Next::Report(report),
                update = updates.recv() => Next::Update(update),
                event = source.next(options.max_batch) => Next::Source(event?),
            }
        };
        match next {
            Next::Shutdown => {
                settle(engine, source, &mut durability).await?;
                tracing::info!("shutting down: the last batch is stored and its offsets committed");
                break;
            }
            Next::Report(report) => {
                handle_report(report, engine, source, &mut durability).await?;
            }
            Next::Update(update) => {
                let detected = apply_update(engine, update);
                durability.submit(engine.finish_batch()).await?;
                settle(engine, source, &mut durability).await?;
                if let Some(detected) = detected {
                    tracing::info!(
                        visible_after_ms = detected.elapsed().as_millis() as u64,
                        "new build live: windows it changed are stored, and every batch from now on uses it"
                    );
                }
            }
            Next::Source(SourceEvent::Records(records)) => {
                fold_batch(records, engine, source, &mut durability).await?;
                if options.max_in_flight == 0 {
                    settle(engine, source, &mut durability).await?;
                } else {
                    report_durable(engine, source, &mut durability).await?;
                }
            }
            Next::Source(SourceEvent::Revoked(partitions)) => {
                // Their in-flight batches land before another host may read the checkpoints.
                settle(engine, source, &mut durability).await?;
                engine.forget_partitions(&partitions);
            }
            Next::Source(SourceEvent::Assigned(partitions)) => {
                for partition in partitions {
                    if !source.holds(partition) {
                        continue; // revoked again before this host took it over
                    }
                    // Assigned anew: a partition this host was fenced from is its own again.
                    engine.unfence(partition);
                    if !engine.knows_partition(partition) {
                        recovery::place_at_checkpoint(source, &mut durability, partition).await?;
                    }
                }
            }
            Next::Source(SourceEvent::CaughtUp) => {
                if options.exit_when_caught_up && !settle(engine, source, &mut durability).await? {
                    tracing::info!("caught up with every assigned partition");
                    break;
                }
            }
            Next::Source(SourceEvent::End) => {
                settle(engine, source, &mut durability).await?;
                break;
            }
        }
        if last_log.elapsed() >= options.log_every {
            log_progress(engine.stats());
            crate::metrics::global().set_held_windows(&engine.held_windows());
            last_log = Instant::now();
        }
    }
    log_progress(engine.stats());
    crate::metrics::global().set_held_windows(&engine.held_windows());
    Ok(engine.stats().clone())
}

/// Restores the partitions the batch brings that are not in memory yet, runs the batch
/// through the engine, and hands its effects to the durable side.
async fn fold_batch<S: Source>(
    mut records: Vec<SourceRecord>,
    engine: &mut Engine,
    source: &mut S,
    durability: &mut Durability,
) -> anyhow::Result<()> {
    let mut rewound = Vec::new();
    for partition in unknown_partitions(engine, &records) {
        let checkpoint = durability.load_checkpoint(partition).await?;
        let resume_at = checkpoint.as_ref().map(|cp| cp.next_offset);
        if recovery::rewind_if_behind(source, partition, resume_at, &records).await? {
            rewound.push(partition);
            continue;
        }
        let mut archived = std::collections::HashMap::new();
        if let Some(cp) = &checkpoint {
            for hash in engine.missing_builds(cp) {
                if let Some(bytes) = durability.load_build(&hash).await? {
                    archived.insert(hash, bytes);
                }
            }
            tracing::info!(
                partition,
                next_offset = cp.next_offset,
                sites = cp.sites.len(),
                "partition restored from its checkpoint"
            );
        } else {
            tracing::info!(
                partition,
                "partition restored: no checkpoint yet, a fresh start"
            );
        }
        engine.restore_partition(partition, checkpoint, &archived)?;
    }
    if !rewound.is_empty() {
        records.retain(|r| !rewound.contains(&r.partition));
    }
    let before = engine.stats().clone();
    count_read(&records);
    for chunk in records.chunks(ACCEPT_CHUNK) {
        Stage::Accept.time(|| {
            for record in chunk {
                engine.process(record);
            }
        });
        // The durable side runs in this task: give it a turn between chunks.
        tokio::task::yield_now().await;
    }
    source.recycle(records);
    // Finishing the batch emits the days it closed: counted with the rest.
    let effects = engine.finish_batch();
    crate::metrics::global().add_engine_progress(&before, engine.stats());
    durability.submit(effects).await
}

/// Counts a batch's records per partition (one add per partition) and its size.
fn count_read(records: &[SourceRecord]) {
    if records.is_empty() {
        return;
    }
    let metrics = crate::metrics::global();
    metrics.batch_records.observe(records.len() as f64);
    let mut partitions: Vec<(i32, u64)> = Vec::new();
    for record in records {
        match partitions.iter_mut().find(|(p, _)| *p == record.partition) {
            Some((_, n)) => *n += 1,
            None => partitions.push((record.partition, 1)),
        }
    }
    for (partition, n) in partitions {
        let labels = crate::metrics::PartitionLabels { partition };
        metrics.records_read.get_or_create(&labels).inc_by(n);
    }
}

/// Handles the reports already waiting, without waiting for more.
async fn report_durable<S: Source>(
    engine: &mut Engine,
    source: &mut S,
    durability: &mut Durability,
) -> anyhow::Result<bool> {
    let mut rebuilt = false;
    while let Some(report) = durability.try_report() {
        rebuilt |= handle_report(report, engine, source, durability).await?;
    }
    Ok(rebuilt)
}

/// Waits until every batch handed over is durable and its offsets committed. Returns
/// whether the store lost data meanwhile (the partitions are then being rebuilt).
async fn settle<S: Source>(
    engine: &mut Engine,
    source: &mut S,
    durability: &mut Durability,
) -> anyhow::Result<bool> {
    durability.flush().await?;
    report_durable(engine, source, durability).await
}

/// A durable batch's offsets are committed to the source; lost data is rebuilt. Returns
/// whether it rebuilt.
async fn handle_report<S: Source>(
    report: Report,
    engine: &mut Engine,
    source: &mut S,
    durability: &mut Durability,
) -> anyhow::Result<bool> {
    match report {
        Report::Durable(offsets) => {
            let _committing = Stage::Commit.start();
            source.commit(&offsets).await?;
            Ok(false)
        }
        Report::Lost(lost) => {
            if let Some(StoreError::Fenced { partitions }) = lost.downcast_ref::<StoreError>() {
                engine.fence(partitions);
            }
            recovery::rebuild(lost, engine, source, durability).await?;
            Ok(true)
        }
    }
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
        .filter(|&p| !engine.knows_partition(p) && !engine.is_fenced(p))
        .collect();
    partitions.sort_unstable();
    partitions.dedup();
    partitions
}

fn log_progress(stats: &Stats) {
    let stages = crate::profile::Breakdown::now().summary();
    tracing::info!(
        records = stats.records,
        on_time = stats.on_time,
        late_accepted = stats.late_accepted,
        late_rejected = stats.late_rejected,
        dead_letters = stats.dead_letter_total(),
        outputs = stats.outputs_emitted,
        plugin_errors = stats.plugin_errors,
        skipped_replayed = stats.skipped_replayed,
        skipped_fenced = stats.skipped_fenced,
        %stages,
        "progress"
    );
}
