//! Hot swaps as the engine sees them: a tenant switched to a new pipeline and plugin
//! builds between two batches (the rules for open windows are in `tenant.rs`), or a new
//! build refused.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::json;

use super::site::SiteState;
use super::tenant::OutputRemap;
use super::{Engine, OutRecord, OutTopic, SwapReport};
use crate::plugin::LoadedPlugin;
use crate::tenant::TenantBuild;

impl Engine {
    /// Switches a tenant to a new pipeline and plugin builds, between two batches (the
    /// rules for open windows are in `tenant.rs`). Windows held by a failed build are
    /// retried at the end of the next batch.
    pub fn apply(&mut self, tenant: usize, build: &TenantBuild) -> anyhow::Result<SwapReport> {
        let mut new_builds = Vec::new();
        let t = &mut self.tenants[tenant];
        let (remap, report) = t.apply(build, &mut new_builds)?;
        crate::metrics::global()
            .swaps
            .get_or_create(&crate::metrics::TenantLabels {
                tenant: t.name.clone(),
            })
            .inc();
        self.effects.plugin_builds.extend(archive(new_builds));
        let mut in_use = HashSet::new();
        let mut moved = HashSet::new();
        for site in self.sites.values_mut().filter(|s| s.tenant == tenant) {
            remap_site(site, &remap);
            for day in site.days.values_mut() {
                for slot in &mut day.slots {
                    in_use.extend(slot.version);
                    if slot.held_by.is_some() {
                        slot.dirty = day.emitted;
                        in_use.extend(slot.held_by);
                    }
                }
            }
            site.touched = true;
            moved.insert(site.partition);
        }
        self.tenants[tenant].collect_versions(&in_use);
        let mut report = report;
        report.builds_loaded = self.tenants[tenant].loaded_versions();
        for p in moved {
            if let Some(state) = self.partitions.get_mut(&p) {
                state.moved = true;
            }
        }
        Ok(report)
    }

    /// Records that a tenant's new plugin or pipeline was refused (it stays on its current
    /// build): a `plugin-errors` record, as for a failing call.
    pub fn refused(&mut self, tenant: usize, what: &str, error: &str) {
        self.stats.plugin_errors += 1;
        let tenant = &self.tenants[tenant].name;
        self.effects.records.push(OutRecord {
            topic: OutTopic::PluginErrors,
            key: Some(format!("{tenant}:deploy")),
            value: json!({
                "tenant": tenant,
                "action": "refused",
                "what": what,
                // A refusal quotes what failed (a parse error can quote the file).
                "error": crate::plugin::bounded_message(error.to_owned()),
            })
            .to_string(),
        });
    }
}

/// Moves a site's windows from the old output numbering to the new one.
fn remap_site(site: &mut SiteState, remap: &OutputRemap) {
    let old_from = std::mem::take(&mut site.output_from);
    site.output_from = remap
        .kept_from
        .iter()
        .map(|kept| kept.map_or(site.newest_ts, |o| old_from[o]))
        .collect();
    site.output_series = vec![None; remap.outputs];
    for day in site.days.values_mut() {
        let mut old = std::mem::take(&mut day.slots);
        day.slots = remap
            .kept_from
            .iter()
            .map(|kept| {
                kept.map(|o| std::mem::take(&mut old[o]))
                    .unwrap_or_default()
            })
            .collect();
    }
}

pub(super) fn archive(builds: Vec<LoadedPlugin>) -> Vec<(String, Arc<[u8]>)> {
    builds
        .into_iter()
        .map(|b| (b.hash().to_owned(), b.bytes().clone()))
        .collect()
}
