//! The end of a batch: fold what it brought into every touched site's windows, emit what
//! is due or changed, and hand over the effects with a checkpoint of each partition that
//! moved.

use std::collections::HashMap;

use iot_protocol::time::StampConvention;

use super::tenant::VersionId;
use super::{BuildRef, Effects, Engine, PartitionCheckpoint};
use crate::profile::Stage;

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
        effects.checkpoints = partitions.into_iter().map(|p| self.checkpoint(p)).collect();
        effects
    }

    pub(super) fn checkpoint(&self, partition: i32) -> PartitionCheckpoint {
        let mut builds: Vec<BuildRef> = Vec::new();
        let mut index: HashMap<(usize, VersionId), u32> = HashMap::new();
        let sites = self
            .sites
            .iter()
            .filter(|(_, s)| s.partition == partition)
            .map(|(n, s)| {
                let tenant = &self.tenants[s.tenant];
                let mut build_index = |v: VersionId| {
                    *index.entry((s.tenant, v)).or_insert_with(|| {
                        let version = tenant.version(v);
                        builds.push(BuildRef {
                            hash: version.plugin.hash().to_owned(),
                            state_version: version.state_version(),
                        });
                        (builds.len() - 1) as u32
                    })
                };
                (
                    n.clone(),
                    s.snapshot(&tenant.output_names, &mut build_index),
                )
            })
            .collect();
        PartitionCheckpoint {
            partition,
            next_offset: self.partitions.get(&partition).map_or(0, |p| p.next_offset),
            builds,
            sites,
            stamps: match self.config.stamps {
                StampConvention::IntervalEnd => None,
                other => Some(other.as_str().to_owned()),
            },
        }
    }
}
