//! The time-aligned merge: records of many input partitions, handed on in the order their
//! producers sent them, so a site's readings come out in one order whatever the layout.
//!
//! A site's watermark is the newest reading seen, so the order in which the stage writes
//! a site's readings decides what is late. Taking partitions in turn (or whichever the
//! client fetched first) would let one partition run days ahead of another. Instead the
//! merge always hands on the head with the smallest *send time* (the Kafka record
//! timestamp, then the reading's own time, then the partition), and waits for a partition
//! that has no record buffered unless it is read to its end — the rule Kafka Streams uses
//! to order a task's partitions. Each partition's own order is kept.
//!
//! Pure data structure: the Kafka loop feeds it and asks it what is next.

use std::collections::{BTreeMap, VecDeque};

/// An input partition: (index of its topic in the stage's inputs, partition).
pub type InputPartition = (usize, i32);

/// Where a record goes in the merged order: send time, then the reading's own time (for
/// records sent in the same millisecond), then the partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct MergeKey {
    pub sent_ms: i64,
    pub event_ms: i64,
}

#[derive(Debug)]
struct PartitionQueue<T> {
    records: VecDeque<(MergeKey, T)>,
    /// Read to its end: nothing to wait for until it says otherwise.
    at_end: bool,
}

impl<T> Default for PartitionQueue<T> {
    fn default() -> Self {
        PartitionQueue {
            records: VecDeque::new(),
            at_end: false,
        }
    }
}

/// Records waiting to be merged, per assigned input partition.
#[derive(Debug)]
pub struct Merge<T> {
    queues: BTreeMap<InputPartition, PartitionQueue<T>>,
}

impl<T> Default for Merge<T> {
    fn default() -> Self {
        Merge {
            queues: BTreeMap::new(),
        }
    }
}

impl<T> Merge<T> {
    /// The assignment changed: only these partitions are merged from now on, each waited
    /// for until its first record or end-of-partition notice.
    pub fn assign(&mut self, partitions: impl IntoIterator<Item = InputPartition>) {
        self.queues = partitions
            .into_iter()
            .map(|p| (p, PartitionQueue::default()))
            .collect();
    }

    /// Forgets every buffered record (after an aborted transaction the consumer rewinds
    /// and reads them again), and waits for each partition again.
    pub fn clear(&mut self) {
        for queue in self.queues.values_mut() {
            *queue = PartitionQueue::default();
        }
    }

    /// A record of `partition`, in the partition's order. Ignored if the partition is not
    /// assigned (a record fetched before a rebalance).
    pub fn push(&mut self, partition: InputPartition, key: MergeKey, record: T) {
        if let Some(queue) = self.queues.get_mut(&partition) {
            queue.records.push_back((key, record));
            queue.at_end = false;
        }
    }

    /// The partition is read to its end: the merge stops waiting for it.
    pub fn reached_end(&mut self, partition: InputPartition) {
        if let Some(queue) = self.queues.get_mut(&partition) {
            queue.at_end = true;
        }
    }

    /// The next record in merged order, or `None` when nothing is buffered or a partition
    /// that may still have earlier records has none buffered yet.
    pub fn pop(&mut self) -> Option<(InputPartition, T)> {
        let mut next: Option<(&MergeKey, InputPartition)> = None;
        for (&partition, queue) in &self.queues {
            match queue.records.front() {
                None if !queue.at_end => return None,
                None => {}
                Some((key, _)) if next.is_none_or(|(best, _)| key < best) => {
                    next = Some((key, partition));
                }
                Some(_) => {}
            }
        }
        let (_, partition) = next?;
        let queue = self.queues.get_mut(&partition).expect("found above");
        let (_, record) = queue.records.pop_front().expect("found above");
        Some((partition, record))
    }

    /// Buffered records of a partition (the loop pauses a partition that runs far ahead).
    pub fn buffered(&self, partition: InputPartition) -> usize {
        self.queues.get(&partition).map_or(0, |q| q.records.len())
    }

    /// Every assigned partition is read to its end and nothing is buffered.
    pub fn drained(&self) -> bool {
        !self.queues.is_empty()
            && self
                .queues
                .values()
                .all(|q| q.at_end && q.records.is_empty())
    }

    pub fn partitions(&self) -> impl Iterator<Item = InputPartition> + '_ {
        self.queues.keys().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TH: InputPartition = (0, 0);
    const W1: InputPartition = (0, 3);
    const LATE: InputPartition = (1, 0);

    fn sent(sent_ms: i64) -> MergeKey {
        MergeKey {
            sent_ms,
            event_ms: 0,
        }
    }

    fn drain(merge: &mut Merge<&'static str>) -> Vec<&'static str> {
        std::iter::from_fn(|| merge.pop().map(|(_, r)| r)).collect()
    }

    #[test]
    fn records_come_out_in_the_order_they_were_sent_across_partitions() {
        let mut merge = Merge::default();
        merge.assign([TH, W1, LATE]);
        merge.push(TH, sent(1), "th@1");
        merge.push(TH, sent(3), "th@3");
        merge.push(W1, sent(2), "w1@2");
        merge.push(LATE, sent(2), "late@2");
        for p in [TH, W1, LATE] {
            merge.reached_end(p);
        }
        // Equal send times: the partition order decides (W1's partition before the late topic).
        assert_eq!(drain(&mut merge), ["th@1", "w1@2", "late@2", "th@3"]);
        assert!(merge.drained());
    }

    #[test]
    fn a_partition_with_nothing_buffered_is_waited_for_until_it_is_at_its_end() {
        let mut merge = Merge::default();
        merge.assign([TH, W1]);
        merge.push(TH, sent(5), "th@5");
        assert_eq!(merge.pop(), None, "W1 may still hold an earlier record");
        merge.push(W1, sent(4), "w1@4");
        assert_eq!(merge.pop(), Some((W1, "w1@4")));
        assert_eq!(merge.pop(), None, "W1 is empty again and not at its end");
        merge.reached_end(W1);
        assert_eq!(merge.pop(), Some((TH, "th@5")));
    }

    #[test]
    fn records_sent_in_the_same_millisecond_go_by_their_reading_time() {
        let mut merge = Merge::default();
        merge.assign([TH, W1]);
        let at = |event_ms| MergeKey {
            sent_ms: 7,
            event_ms,
        };
        merge.push(TH, at(20), "th step 2");
        merge.push(W1, at(10), "w1 step 1");
        merge.reached_end(TH);
        merge.reached_end(W1);
        assert_eq!(drain(&mut merge), ["w1 step 1", "th step 2"]);
    }

    #[test]
    fn records_of_partitions_no_longer_assigned_are_ignored() {
        let mut merge = Merge::default();
        merge.assign([TH]);
        merge.push(W1, sent(1), "stale");
        merge.reached_end(TH);
        assert_eq!(merge.pop(), None);
        assert!(merge.drained());
    }

    #[test]
    fn clear_forgets_buffered_records_and_waits_again() {
        let mut merge = Merge::default();
        merge.assign([TH]);
        merge.push(TH, sent(1), "th@1");
        merge.clear();
        assert_eq!(merge.pop(), None);
        assert!(!merge.drained());
        assert_eq!(merge.buffered(TH), 0);
    }
}
