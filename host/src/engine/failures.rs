//! Plugin failures as the engine reports them: counted, logged, a `plugin-errors` record,
//! quarantine after too many in a row, and windows that closed while held.

use iot_protocol::time::format_ts;
use serde_json::json;

use super::site::{DayState, SiteState};
use super::tenant::{VersionId, QUARANTINE_AFTER};
use super::{Engine, OutRecord, OutTopic};
use crate::plugin::PluginError;

impl Engine {
    /// A call failed: count it, log it, write a `plugin-errors` record, and quarantine the
    /// build after too many failures in a row.
    pub(super) fn plugin_failed(
        &mut self,
        site: &str,
        tenant: usize,
        output: usize,
        version: VersionId,
        end: i64,
        error: &PluginError,
    ) {
        let t = &mut self.tenants[tenant];
        let pipeline = t.pipeline.clone();
        let spec = &pipeline.outputs[output];
        let tenant_name = t.name.clone();
        let v = t.version_mut(version);
        v.failures_in_a_row += 1;
        let quarantine = !v.quarantined && v.failures_in_a_row >= QUARANTINE_AFTER;
        v.quarantined |= quarantine;
        let build = v.plugin.short_hash().to_owned();
        let output_name = format!("{}:{}", spec.name, spec.kind);
        tracing::warn!(tenant = %tenant_name, site, output = %output_name, plugin = %spec.plugin, build = %build, day_end = %format_ts(end), "plugin failed, window held until a new build is deployed: {error}");
        self.stats.plugin_errors += 1;
        self.effects.records.push(OutRecord {
            topic: OutTopic::PluginErrors,
            key: Some(format!("{site}:{output_name}")),
            value: json!({
                "tenant": tenant_name,
                "site": site,
                "output": spec.name,
                "kind": spec.kind.as_str(),
                "plugin": spec.plugin,
                "build": build,
                "window_end": format_ts(end),
                "action": "held",
                "error": error.to_string(),
            })
            .to_string(),
        });
        if quarantine {
            crate::metrics::global()
                .plugin_quarantines
                .get_or_create(&crate::metrics::PluginLabels {
                    tenant: tenant_name.to_string(),
                    plugin: spec.plugin.to_string(),
                })
                .inc();
            tracing::error!(tenant = %tenant_name, plugin = %spec.plugin, build = %build, "plugin build quarantined after {QUARANTINE_AFTER} failures in a row: its outputs are held until a new build is deployed");
            self.effects.records.push(OutRecord {
                topic: OutTopic::PluginErrors,
                key: Some(format!("{tenant_name}:{}", spec.plugin)),
                value: json!({
                    "tenant": tenant_name,
                    "plugin": spec.plugin,
                    "build": build,
                    "action": "quarantined",
                    "error": format!("{QUARANTINE_AFTER} failures in a row; the last: {error}"),
                })
                .to_string(),
            });
        }
    }

    /// A day leaves memory with windows still held: their values are lost for good, say so.
    pub(super) fn report_unresolved(
        &mut self,
        name: &str,
        site: &SiteState,
        end: i64,
        day: &DayState,
    ) {
        let t = &self.tenants[site.tenant];
        for (output, slot) in day.slots.iter().enumerate() {
            let Some(version) = slot.held_by else {
                continue;
            };
            let spec = &t.pipeline.outputs[output];
            self.stats.plugin_errors += 1;
            self.effects.records.push(OutRecord {
                topic: OutTopic::PluginErrors,
                key: Some(format!("{name}:{}:{}", spec.name, spec.kind)),
                value: json!({
                    "tenant": t.name,
                    "site": name,
                    "output": spec.name,
                    "kind": spec.kind.as_str(),
                    "plugin": spec.plugin,
                    "build": t.version(version).plugin.short_hash(),
                    "window_end": format_ts(end),
                    "action": "dropped",
                    "error": format!(
                        "the window closed (beyond the allowed lateness) while held: no fixed build was deployed in time; {} samples were not folded",
                        slot.pending.len()
                    ),
                })
                .to_string(),
            });
        }
    }
}
