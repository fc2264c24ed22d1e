//! Where a partition resumes, and rebuilding what the store lost.
//!
//! The store's checkpoints decide where each partition resumes, not the consumer group's
//! committed offsets: when a partition's first records start past its checkpoint (or past
//! the start of the topic, with no checkpoint at all), the store lost data the group had
//! already moved past, and the partition is rewound to rebuild it. The same happens to
//! every partition in memory when the store reports lost data mid-run ([`rebuild`]).

use super::durable::Durability;
use crate::engine::{Engine, SourceRecord};
use crate::source::Source;

/// The store lost data, or fenced this host from some partitions (`lost` says which; the
/// caller has already forgotten the fenced ones): forgets every partition's state, lets the
/// durable side write again, and rewinds each remaining partition to what the store still
/// holds: its checkpoint, or the start of the topic. (The batches discarded after the
/// failed one held the remaining partitions' records too.)
pub(super) async fn rebuild<S: Source>(
    lost: anyhow::Error,
    engine: &mut Engine,
    source: &mut S,
    durability: &mut Durability,
) -> anyhow::Result<()> {
    match lost.downcast_ref::<crate::store::StoreError>() {
        Some(
            crate::store::StoreError::Fenced { .. } | crate::store::StoreError::ClaimLost { .. },
        ) => tracing::warn!("{lost:#}"),
        _ => tracing::error!("{lost:#}"),
    }
    let partitions = engine.partitions();
    engine.forget_partitions(&partitions);
    durability.resync().await?;
    // Only partitions still assigned here are taken over again (reading a checkpoint claims
    // the partition: one the group just gave to another host must stay theirs).
    let still_held: Vec<i32> = partitions
        .into_iter()
        .filter(|&p| source.holds(p))
        .collect();
    for partition in still_held {
        let resume_at = match durability.load_checkpoint(partition).await? {
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
pub(super) async fn place_at_checkpoint<S: Source>(
    source: &mut S,
    durability: &mut Durability,
    partition: i32,
) -> anyhow::Result<()> {
    let checkpoint = durability
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
pub(super) async fn rewind_if_behind<S: Source>(
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
