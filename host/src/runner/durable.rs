//! The durable side of the pipeline: makes batches durable in the order the fold side hands
//! them over, while the fold side goes on with the next ones.
//!
//! Guarantees: batches become durable one at a time, in the order they were submitted (so
//! each partition's batches in order). For each batch its topic records are acknowledged
//! first, then its samples and checkpoints are written in one store transaction, then it is
//! reported [`Report::Durable`] and the observer hears of it. Publishing and storing are two
//! stages: batch N+1's records are published while batch N is written to the store (a
//! batch's own records are always acknowledged before its transaction); the fold side commits source
//! offsets only on that report. A checkpoint therefore never names an offset whose samples
//! are not stored, however many batches are in flight, and a crash at any instant leaves the
//! store at the end of some batch of each partition. Questions to the store (a checkpoint,
//! an archived build) are jobs like batches: answered after every batch submitted before
//! them is durable.
//!
//! Duties of the caller: at most `max_in_flight` jobs wait (the channel's bound is the
//! backpressure that keeps memory flat however large the backlog). After a
//! [`Report::Lost`] it forgets the state those batches were built on and sends
//! [`Durability::resync`] before submitting anything built on the rebuilt state.
//!
//! Partitioning: one durable side per host, for every partition the host owns.
//!
//! Errors: the store retries outages itself. A store that lost data
//! ([`StoreError::DataLost`]) is reported as [`Report::Lost`], and the batches already
//! submitted after it are discarded (they were built on the lost state) until the resync.
//! Any other error ends the durable side with that error, and the host stops.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use super::CommitObserver;
use crate::engine::{Effects, PartitionCheckpoint};
use crate::profile::Stage;
use crate::publish::Publisher;
use crate::store::{Store, StoreError};

/// Batches that may wait for the durable side by default: enough that folding never waits
/// for one round trip to Redis, few enough that a crash re-reads little and memory stays
/// small (each holds one batch's samples, records and checkpoints).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 4;

pub(super) enum Job {
    /// A batch's effects, with when the fold side handed it over.
    Batch(Effects, Instant),
    LoadCheckpoint(
        i32,
        oneshot::Sender<anyhow::Result<Option<PartitionCheckpoint>>>,
    ),
    LoadBuild(String, oneshot::Sender<anyhow::Result<Option<Vec<u8>>>>),
    /// Answered once every job before it is done.
    Flush(oneshot::Sender<()>),
    /// The fold side rebuilt its state after a [`Report::Lost`]: write batches again.
    Resync,
}

/// What the durable side tells the fold side, in batch order.
pub(super) enum Report {
    /// A batch is durable: these (partition, next offset) may be committed to the source.
    Durable(Vec<(i32, i64)>),
    /// The store lost data; batches are discarded until the resync.
    Lost(anyhow::Error),
}

/// How often "the durable side is behind" is logged at most: during a backlog it is the
/// normal state, and one line says it.
const BEHIND_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// One wait of the fold side longer than this is a stall, not backpressure: said at once
/// (a Redis that accepts connections but does not answer is only an outage after the
/// store's response timeout).
pub const STALL_WARNING: std::time::Duration = std::time::Duration::from_secs(5);

/// The fold side's handle on the durable side.
pub(super) struct Durability {
    jobs: mpsc::Sender<Job>,
    reports: mpsc::UnboundedReceiver<Report>,
    /// When "behind" was last logged, and the waits since.
    behind_logged: Option<std::time::Instant>,
    waits: u64,
}

/// The durable side's ends of the channels.
pub(super) struct DurableEnds {
    jobs: mpsc::Receiver<Job>,
    reports: mpsc::UnboundedSender<Report>,
}

pub(super) fn channel(max_in_flight: usize) -> (Durability, DurableEnds) {
    let (jobs_tx, jobs_rx) = mpsc::channel(max_in_flight.max(1));
    let (reports_tx, reports_rx) = mpsc::unbounded_channel();
    (
        Durability {
            jobs: jobs_tx,
            reports: reports_rx,
            behind_logged: None,
            waits: 0,
        },
        DurableEnds {
            jobs: jobs_rx,
            reports: reports_tx,
        },
    )
}

/// The durable side ended (on an error, which the runner returns instead of this).
fn stopped() -> anyhow::Error {
    anyhow::anyhow!("the durable side of the pipeline stopped")
}

impl Durability {
    /// Hands a batch over; waits only while the most batches allowed are in flight.
    pub async fn submit(&mut self, effects: Effects) -> anyhow::Result<()> {
        if effects.is_empty() {
            return Ok(());
        }
        match self.jobs.try_send(Job::Batch(effects, Instant::now())) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(job)) => {
                self.log_behind();
                let _waiting = Stage::Backpressure.start();
                let permit = match tokio::time::timeout(STALL_WARNING, self.jobs.reserve()).await {
                    Ok(permit) => permit,
                    Err(_) => {
                        tracing::warn!(
                            in_flight = self.jobs.max_capacity(),
                            "the durable side took no batch for {} s: Redis or Kafka is not \
                             answering; folding waits (nothing is lost)",
                            STALL_WARNING.as_secs()
                        );
                        self.jobs.reserve().await
                    }
                };
                permit.map_err(|_| stopped())?.send(job);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(stopped()),
        }
    }

    fn log_behind(&mut self) {
        self.waits += 1;
        if self
            .behind_logged
            .is_some_and(|at| at.elapsed() < BEHIND_LOG_INTERVAL)
        {
            return;
        }
        tracing::info!(
            in_flight = self.jobs.max_capacity(),
            waits = self.waits,
            "the durable side is behind: folding waits for Redis and Kafka to take a batch \
             (normal while a backlog drains; logged at most once a minute)"
        );
        self.behind_logged = Some(std::time::Instant::now());
        self.waits = 0;
    }

    async fn ask<T>(&mut self, job: impl FnOnce(oneshot::Sender<T>) -> Job) -> anyhow::Result<T> {
        let (reply, answer) = oneshot::channel();
        self.jobs.send(job(reply)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())
    }

    /// A partition's checkpoint, as it is once every batch submitted so far is durable.
    pub async fn load_checkpoint(
        &mut self,
        partition: i32,
    ) -> anyhow::Result<Option<PartitionCheckpoint>> {
        self.ask(|reply| Job::LoadCheckpoint(partition, reply))
            .await?
    }

    pub async fn load_build(&mut self, hash: &str) -> anyhow::Result<Option<Vec<u8>>> {
        self.ask(|reply| Job::LoadBuild(hash.to_owned(), reply))
            .await?
    }

    /// Waits until every batch submitted so far is durable (or discarded); their reports
    /// are then waiting in [`Durability::try_report`].
    pub async fn flush(&mut self) -> anyhow::Result<()> {
        self.ask(Job::Flush).await
    }

    pub async fn resync(&mut self) -> anyhow::Result<()> {
        self.jobs.send(Job::Resync).await.map_err(|_| stopped())
    }

    /// The next report; pending forever once the durable side is gone (the runner then
    /// returns its error).
    pub async fn next_report(&mut self) -> Report {
        match self.reports.recv().await {
            Some(report) => report,
            None => std::future::pending().await,
        }
    }

    pub fn try_report(&mut self) -> Option<Report> {
        self.reports.try_recv().ok()
    }
}

/// Batches published and waiting for the store: one, so batch N+1's records are being
/// acknowledged while batch N is written to the store (their sum would be the bound
/// otherwise, measured: publishing was 41 % of a drain, the store 35 %).
const PUBLISHED_AHEAD: usize = 1;

/// Runs the durable side until the fold side drops its [`Durability`] (after a flush, so
/// nothing is left) or an error that is not a data loss. Two stages run concurrently:
/// publishing a batch's records, and writing an already published batch to the store;
/// every job passes through both in order.
pub(super) async fn run<T: Store, P: Publisher, O: CommitObserver>(
    ends: DurableEnds,
    store: &mut T,
    publisher: &mut P,
    observer: &mut O,
) -> anyhow::Result<()> {
    let DurableEnds { jobs, reports } = ends;
    // Data losses the store stage has seen; each is followed by one `Resync` job.
    let losses = AtomicU64::new(0);
    let (published, to_store) = mpsc::channel(PUBLISHED_AHEAD);
    tokio::try_join!(
        publish_stage(jobs, published, publisher, &losses),
        store_stage(to_store, reports, store, observer, &losses),
    )?;
    Ok(())
}

/// Publishes each batch's records (acknowledged) and passes every job on, in order.
async fn publish_stage<P: Publisher>(
    mut jobs: mpsc::Receiver<Job>,
    published: mpsc::Sender<Job>,
    publisher: &mut P,
    losses: &AtomicU64,
) -> anyhow::Result<()> {
    let mut resyncs = 0;
    while let Some(job) = jobs.recv().await {
        match &job {
            // Between a loss and its resync, batches were built on the state the store
            // lost: they are folded and published again after the rebuild, so publishing
            // them now would only repeat records.
            Job::Batch(effects, _)
                if !effects.records.is_empty() && losses.load(Ordering::Relaxed) == resyncs =>
            {
                let _publishing = Stage::Publish.start();
                publisher.publish(&effects.records).await?;
                count_published(&effects.records);
            }
            Job::Resync => resyncs += 1,
            _ => {}
        }
        if published.send(job).await.is_err() {
            break; // the store stage ended on an error, which the caller returns
        }
    }
    Ok(())
}

/// Writes each published batch to the store in one transaction and reports it durable;
/// answers the store questions among the jobs.
async fn store_stage<T: Store, O: CommitObserver>(
    mut jobs: mpsc::Receiver<Job>,
    reports: mpsc::UnboundedSender<Report>,
    store: &mut T,
    observer: &mut O,
    losses: &AtomicU64,
) -> anyhow::Result<()> {
    let mut discarding = false;
    while let Some(job) = jobs.recv().await {
        match job {
            // Built on the state the store lost, or on a partition taken over.
            Job::Batch(effects, _) if discarding => store.keep_series(&effects.new_series),
            Job::Batch(effects, submitted) => {
                let written = {
                    let _storing = Stage::Store.start();
                    store.commit(&effects).await
                };
                match written {
                    Ok(()) => {
                        crate::metrics::global()
                            .batch_durable_seconds
                            .observe(submitted.elapsed().as_secs_f64());
                        observer.committed(&effects);
                        let offsets = effects
                            .checkpoints
                            .iter()
                            .map(|c| (c.partition, c.next_offset))
                            .collect();
                        let _ = reports.send(Report::Durable(offsets));
                    }
                    Err(error) if is_data_loss(&error) => {
                        discarding = true;
                        losses.fetch_add(1, Ordering::Relaxed);
                        let _ = reports.send(Report::Lost(error));
                    }
                    Err(error) => return Err(error),
                }
            }
            Job::Resync => discarding = false,
            Job::LoadCheckpoint(partition, reply) => {
                let _ = reply.send(store.load_checkpoint(partition).await);
            }
            Job::LoadBuild(hash, reply) => {
                let _ = reply.send(store.load_plugin_build(&hash).await);
            }
            Job::Flush(reply) => {
                let _ = reply.send(());
            }
        }
    }
    Ok(())
}

fn is_data_loss(error: &anyhow::Error) -> bool {
    matches!(
        error.downcast_ref::<StoreError>(),
        Some(
            StoreError::DataLost { .. } | StoreError::Fenced { .. } | StoreError::ClaimLost { .. }
        )
    )
}

/// Adds a published batch's records to the per-topic counter: one pass over the records,
/// one add per topic.
fn count_published(records: &[crate::engine::OutRecord]) {
    let mut counts: Vec<(&'static str, u64)> = Vec::with_capacity(4);
    for record in records {
        let topic = record.topic.metric_label();
        match counts.iter_mut().find(|(t, _)| *t == topic) {
            Some((_, n)) => *n += 1,
            None => counts.push((topic, 1)),
        }
    }
    let published = &crate::metrics::global().records_published;
    for (topic, n) in counts {
        let labels = crate::metrics::TopicLabels { topic };
        published.get_or_create(&labels).inc_by(n);
    }
}
