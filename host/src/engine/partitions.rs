//! The partitions an engine holds: restoring one from its checkpoint (with the plugin
//! builds it names), forgetting one handed to another host, and fencing one another host
//! took over.

use std::collections::HashMap;

use anyhow::Context as _;

use super::site::SiteState;
use super::tenant::VersionId;
use super::{BuildRef, Engine, PartitionCheckpoint};

pub(super) struct PartitionState {
    pub(super) next_offset: i64,
    /// The offset moved in the current batch: the partition needs a new checkpoint.
    pub(super) moved: bool,
    /// Each site's checkpoint field as last written: the next write sends only the sites
    /// whose bytes differ.
    pub(super) written: HashMap<String, Vec<u8>>,
    /// The next write replaces the stored checkpoint whole (nothing written since the
    /// partition was placed).
    pub(super) replace: bool,
}

impl PartitionState {
    pub(super) fn placed_at(next_offset: i64) -> PartitionState {
        PartitionState {
            next_offset,
            moved: false,
            written: HashMap::new(),
            replace: true,
        }
    }
}

impl Engine {
    /// Whether the partition's state is in memory (else the caller restores it first).
    pub fn knows_partition(&self, partition: i32) -> bool {
        self.partitions.contains_key(&partition)
    }

    /// The partitions whose state is in memory.
    pub fn partitions(&self) -> Vec<i32> {
        let mut partitions: Vec<i32> = self.partitions.keys().copied().collect();
        partitions.sort_unstable();
        partitions
    }

    /// Plugin builds a checkpoint refers to that no tenant has loaded: the caller fetches
    /// them from the archive and passes them to [`restore_partition`](Self::restore_partition).
    pub fn missing_builds(&self, checkpoint: &PartitionCheckpoint) -> Vec<String> {
        let mut missing: Vec<String> = checkpoint
            .builds
            .iter()
            .filter(|b| self.tenants.iter().all(|t| t.find_build(&b.hash).is_none()))
            .map(|b| b.hash.clone())
            .collect();
        missing.dedup();
        missing
    }

    /// Installs a partition's state from its checkpoint, or an empty state starting at the
    /// consumer's position when there is none. `archived` holds the component bytes of the
    /// builds [`missing_builds`](Self::missing_builds) named, by hash.
    pub fn restore_partition(
        &mut self,
        partition: i32,
        checkpoint: Option<PartitionCheckpoint>,
        archived: &HashMap<String, Vec<u8>>,
    ) -> anyhow::Result<()> {
        let next_offset = match checkpoint {
            Some(cp) => {
                let filed_under = cp.stamps.as_deref().unwrap_or("interval-end");
                if filed_under != self.config.stamps.as_str() {
                    anyhow::bail!(
                        "the checkpoint of partition {partition} filed its windows under \
                         --stamps {filed_under}, but this host runs with --stamps {}: start it \
                         with --stamps {filed_under}, or use a new --key-prefix to start over",
                        self.config.stamps
                    );
                }
                for (name, snapshot) in &cp.sites {
                    let Some(t) = self.tenant_of(name) else {
                        tracing::warn!(site = %name, "checkpoint holds a site no tenant owns now; its windows are dropped");
                        continue;
                    };
                    let builds = self.restore_builds(t, &cp.builds, archived);
                    let tenant = &self.tenants[t];
                    let gone: Vec<&String> = snapshot
                        .outputs
                        .iter()
                        .filter(|o| !tenant.output_names.contains(o))
                        .collect();
                    if !gone.is_empty() {
                        tracing::warn!(site = %name, outputs = ?gone, "the pipeline no longer has these outputs: their open windows in the checkpoint are dropped (stored values stay)");
                    }
                    let site = SiteState::restore(
                        partition,
                        t,
                        tenant.output_names.len(),
                        snapshot,
                        |n| tenant.output_names.iter().position(|o| o == n),
                        |b| builds.get(b as usize).copied().flatten(),
                    )
                    .with_context(|| {
                        format!("checkpoint of site {name} in partition {partition}")
                    })?;
                    self.sites.insert(name.clone(), site);
                }
                cp.next_offset
            }
            None => 0,
        };
        self.partitions
            .insert(partition, PartitionState::placed_at(next_offset));
        Ok(())
    }

    /// The tenant's version of each build a checkpoint names; a build neither loaded nor
    /// archived is replaced by the output's current build (with a warning).
    fn restore_builds(
        &mut self,
        tenant: usize,
        builds: &[BuildRef],
        archived: &HashMap<String, Vec<u8>>,
    ) -> Vec<Option<VersionId>> {
        let t = &mut self.tenants[tenant];
        builds
            .iter()
            .map(|b| {
                if let Some(v) = t.find_build(&b.hash) {
                    return Some(v);
                }
                match archived.get(&b.hash).map(|bytes| t.install_archived(bytes, &b.hash)) {
                    Some(Ok(v)) => Some(v),
                    Some(Err(e)) => {
                        tracing::warn!(tenant = %t.name, build = %b.hash, "archived plugin build does not load: {e}; its windows continue on the current build");
                        None
                    }
                    None => {
                        tracing::warn!(tenant = %t.name, build = %b.hash, "plugin build named by a checkpoint is not in the archive; its windows continue on the current build");
                        None
                    }
                }
            })
            .collect()
    }

    /// Another host owns these partitions now: forget them, and skip their records until
    /// [`unfence`](Self::unfence) (the group assigned them here again).
    pub fn fence(&mut self, partitions: &[i32]) {
        self.forget_partitions(partitions);
        self.fenced.extend(partitions);
    }

    /// The group assigned a fenced partition here again: its records count again.
    pub fn unfence(&mut self, partition: i32) {
        self.fenced.remove(&partition);
    }

    pub fn is_fenced(&self, partition: i32) -> bool {
        self.fenced.contains(&partition)
    }

    /// Forgets partitions handed to another instance; their state lives on in the store.
    pub fn forget_partitions(&mut self, partitions: &[i32]) {
        self.sites.retain(|_, s| !partitions.contains(&s.partition));
        for p in partitions {
            self.partitions.remove(p);
        }
    }
}
