//! The end of a batch: fold what it brought into every touched site's windows, emit what
//! is due or changed, and hand over the effects with a checkpoint of each partition that
//! moved.

use std::collections::HashMap;

use iot_protocol::time::StampConvention;

use super::checkpoint::SiteSnapshot;
use super::checkpoint_format::{self, CheckpointWrite, StoredFields};
use super::tenant::VersionId;
use super::{BuildRef, Effects, Engine, PartitionCheckpoint};
use crate::profile::{self, Stage};

impl Engine {
    /// Folds everything pending, emits due and changed outputs, evicts days beyond the
    /// allowed lateness, and returns the batch's effects with a checkpoint per touched
    /// partition.
    pub fn finish_batch(&mut self) -> Effects {
        Stage::Fold.time(|| self.fold_touched_sites());
        Stage::Checkpoint.time(|| self.take_effects())
    }

    pub(super) fn fold_touched_sites(&mut self) {
        let mut touched: Vec<String> = self
            .sites
            .iter()
            .filter(|(_, s)| s.touched)
            .map(|(n, _)| n.clone())
            .collect();
        touched.sort_unstable();
        for name in &touched {
            self.refresh_site(name);
            self.sites
                .get_mut(name)
                .expect("touched site exists")
                .touched = false;
        }
    }

    /// The batch's effects, with a checkpoint of each partition that needs one.
    pub(super) fn take_effects(&mut self) -> Effects {
        // Only partitions whose offset moved (or whose windows a swap changed) get a new
        // checkpoint.
        let mut partitions: Vec<i32> = Vec::new();
        for (&p, state) in self.partitions.iter_mut() {
            if std::mem::take(&mut state.moved) {
                partitions.push(p);
            }
        }
        partitions.sort_unstable();
        let mut effects = std::mem::take(&mut self.effects);
        effects.checkpoints = partitions
            .into_iter()
            .map(|p| self.checkpoint_write(p))
            .collect();
        effects
    }

    /// What this batch writes of `partition`'s checkpoint: its head, and the sites whose
    /// encoded snapshot differs from the partition's previous write (every site, if this is
    /// the first write since the partition was placed). Comparing bytes rather than
    /// tracking changes keeps it right whatever changed a site (readings, a swap, eviction).
    fn checkpoint_write(&mut self, partition: i32) -> CheckpointWrite {
        let encoded = self.encoded_sites(partition);
        let stamps = self.stamps_name();
        let state = self
            .partitions
            .get_mut(&partition)
            .expect("a partition with a checkpoint to write is placed");
        let replace = std::mem::take(&mut state.replace);
        if replace {
            state.written.clear();
        }
        let removed: Vec<String> = state
            .written
            .keys()
            .filter(|name| !encoded.iter().any(|(n, _)| n == *name))
            .cloned()
            .collect();
        for name in &removed {
            state.written.remove(name);
        }
        let every_site = checkpoint_format::sites_bytes(&encoded);
        let mut sites = Vec::new();
        for (name, bytes) in encoded {
            if state.written.get(&name) != Some(&bytes) {
                state.written.insert(name.clone(), bytes.clone());
                sites.push((name, bytes));
            }
        }
        let write = CheckpointWrite {
            partition,
            next_offset: state.next_offset,
            replace,
            head: checkpoint_format::encode_head(state.next_offset, stamps),
            sites,
            removed,
        };
        let whole = write.bytes() - checkpoint_format::sites_bytes(&write.sites) + every_site;
        profile::checkpoint_written(write.bytes(), whole);
        write
    }

    /// Each site of `partition` with its snapshot, whose build indices refer to the site's
    /// own list of builds; in site order.
    fn site_snapshots(&self, partition: i32) -> Vec<(String, Vec<BuildRef>, SiteSnapshot)> {
        let mut snapshots: Vec<_> = self
            .sites
            .iter()
            .filter(|(_, s)| s.partition == partition)
            .map(|(name, s)| {
                let tenant = &self.tenants[s.tenant];
                let mut builds: Vec<BuildRef> = Vec::new();
                let mut index: HashMap<VersionId, u32> = HashMap::new();
                let mut build_index = |v: VersionId| {
                    *index.entry(v).or_insert_with(|| {
                        let version = tenant.version(v);
                        builds.push(BuildRef {
                            hash: version.plugin.hash().to_owned(),
                            state_version: version.state_version(),
                        });
                        (builds.len() - 1) as u32
                    })
                };
                let snapshot = s.snapshot(&tenant.output_names, &mut build_index);
                (name.clone(), builds, snapshot)
            })
            .collect();
        snapshots.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        snapshots
    }

    /// The whole checkpoint of `partition` as a restart would read it back: encoded and
    /// decoded exactly as stored.
    pub fn partition_checkpoint(&self, partition: i32) -> PartitionCheckpoint {
        let next_offset = self.partitions.get(&partition).map_or(0, |p| p.next_offset);
        let write = CheckpointWrite {
            partition,
            next_offset,
            replace: true,
            head: checkpoint_format::encode_head(next_offset, self.stamps_name()),
            sites: self.encoded_sites(partition),
            removed: Vec::new(),
        };
        let mut stored = StoredFields::default();
        stored.apply(&write);
        stored
            .decode(partition)
            .expect("a checkpoint this engine encoded decodes")
            .expect("a written checkpoint has a head")
    }

    /// Each site of `partition` with its checkpoint field, in site order.
    fn encoded_sites(&self, partition: i32) -> Vec<(String, Vec<u8>)> {
        self.site_snapshots(partition)
            .into_iter()
            .map(|(name, builds, snapshot)| {
                (name, checkpoint_format::encode_site(builds, snapshot))
            })
            .collect()
    }

    /// The stamp convention as checkpoints name it (`None`: interval-end, the default).
    fn stamps_name(&self) -> Option<&'static str> {
        match self.config.stamps {
            StampConvention::IntervalEnd => None,
            other => Some(other.as_str()),
        }
    }
}
