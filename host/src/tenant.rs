//! Tenants (SPEC §6): a tenant is a group of sites with its own plugin folder, pipeline and
//! plugin limits. One tenant's plugins only ever see its own sites' readings: the engine
//! routes every reading to the tenant that owns its site, and each tenant's plugins run in
//! instances of their own under that tenant's limits.
//!
//! Without a tenants file the host runs one tenant, `default`, that owns every site and
//! uses `--plugins`, `--pipeline` and the limit flags.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::pipeline::Pipeline;
use crate::plugin::{LoadedPlugin, PluginKind, PluginLimits};

/// Which sites a tenant owns: exact names, or prefixes written `prefix*`; `*` is every site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteMatcher {
    patterns: Vec<String>,
}

impl SiteMatcher {
    pub fn new(patterns: Vec<String>) -> anyhow::Result<SiteMatcher> {
        if patterns.is_empty() {
            bail!("a tenant needs at least one site pattern (a name, `prefix*`, or `*`)");
        }
        for p in &patterns {
            if p.is_empty() || p[..p.len() - 1].contains('*') {
                bail!("site pattern {p:?}: use an exact site name, `prefix*` or `*`");
            }
        }
        Ok(SiteMatcher { patterns })
    }

    /// Every site.
    pub fn all() -> SiteMatcher {
        SiteMatcher {
            patterns: vec!["*".into()],
        }
    }

    pub fn matches(&self, site: &str) -> bool {
        self.patterns.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => site.starts_with(prefix),
            None => p == site,
        })
    }
}

/// Where a tenant's pipeline and plugins come from, and its limits.
#[derive(Debug, Clone)]
pub struct TenantSpec {
    pub name: String,
    pub sites: SiteMatcher,
    /// Folder of `<plugin>.wasm` files, watched for new builds.
    pub plugin_dir: PathBuf,
    /// Pipeline file, watched for edits; the reference pipeline when `None`.
    pub pipeline_file: Option<PathBuf>,
    pub limits: PluginLimits,
}

/// A tenant's pipeline with every plugin it names, compiled and validated: what the engine
/// switches to, atomically, between two batches.
#[derive(Debug, Clone)]
pub struct TenantBuild {
    pub pipeline: Arc<Pipeline>,
    /// By the name the pipeline uses (the file stem).
    pub plugins: HashMap<String, LoadedPlugin>,
}

impl TenantBuild {
    /// Checks that every plugin the pipeline names is here and takes as many inputs as the
    /// outputs give it.
    pub fn check(&self) -> anyhow::Result<()> {
        for output in &self.pipeline.outputs {
            let plugin = self.plugins.get(&output.plugin).ok_or_else(|| {
                anyhow::anyhow!(
                    "output {}:{} uses plugin {:?}, which is not in the plugin folder \
                     (expected {}.wasm; build plugins with scripts/build-plugins)",
                    output.name,
                    output.kind,
                    output.plugin,
                    output.plugin
                )
            })?;
            let wants = match output.kind {
                iot_protocol::Kind::Alarm => PluginKind::AlarmRule,
                _ => PluginKind::Aggregation,
            };
            if plugin.kind() != wants {
                bail!(
                    "output {}:{} needs a plugin that exports {}, but plugin {:?} exports {} \
                     (alarm rules make outputs of kind Alarm; aggregations make the others)",
                    output.name,
                    output.kind,
                    wants.interface(),
                    output.plugin,
                    plugin.kind().interface()
                );
            }
            let info = plugin.info();
            let inputs = output.inputs.len() as u32;
            if inputs < info.min_inputs || inputs > info.max_inputs {
                bail!(
                    "output {}:{} gives plugin {:?} {inputs} inputs, but it takes {} to {}",
                    output.name,
                    output.kind,
                    output.plugin,
                    info.min_inputs,
                    info.max_inputs
                );
            }
        }
        Ok(())
    }

    /// Same pipeline and the same build of every plugin: applying it would change nothing.
    pub fn same_as(&self, other: &TenantBuild) -> bool {
        self.pipeline == other.pipeline
            && self.plugins.len() == other.plugins.len()
            && self.plugins.iter().all(|(name, p)| {
                other
                    .plugins
                    .get(name)
                    .is_some_and(|o| o.hash() == p.hash())
            })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantsFile {
    tenant: Vec<TenantEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantEntry {
    name: String,
    sites: Vec<String>,
    plugins: PathBuf,
    pipeline: Option<PathBuf>,
    fuel_per_call: Option<u64>,
    /// Milliseconds; 0 turns the host's default off for this tenant.
    wall_clock_per_call_ms: Option<u64>,
    max_memory_mib: Option<usize>,
    max_state_bytes: Option<usize>,
    /// `"deny-all"` or `"deterministic"` (`plugin::WasiAccess`).
    wasi: Option<String>,
}

/// Reads a tenants file. Relative paths are relative to the file's folder; limits left
/// out take `defaults`. A site belongs to the first tenant (in file order) that matches it.
pub fn load_tenants_file(path: &Path, defaults: PluginLimits) -> anyhow::Result<Vec<TenantSpec>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the tenants file {}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse_tenants(&text, base, defaults)
        .with_context(|| format!("tenants file {} is not valid", path.display()))
}

fn parse_tenants(
    text: &str,
    base: &Path,
    defaults: PluginLimits,
) -> anyhow::Result<Vec<TenantSpec>> {
    let file: TenantsFile = toml::from_str(text)?;
    if file.tenant.is_empty() {
        bail!("it declares no [[tenant]]");
    }
    let mut specs: Vec<TenantSpec> = Vec::with_capacity(file.tenant.len());
    for entry in file.tenant {
        if specs.iter().any(|s| s.name == entry.name) {
            bail!("tenant {:?} is declared twice", entry.name);
        }
        let sites =
            SiteMatcher::new(entry.sites).with_context(|| format!("tenant {:?}", entry.name))?;
        specs.push(TenantSpec {
            sites,
            plugin_dir: base.join(entry.plugins),
            pipeline_file: entry.pipeline.map(|p| base.join(p)),
            limits: PluginLimits {
                fuel_per_call: match entry.fuel_per_call {
                    Some(0) => None,
                    Some(fuel) => Some(fuel),
                    None => defaults.fuel_per_call,
                },
                max_memory_bytes: entry
                    .max_memory_mib
                    .map_or(defaults.max_memory_bytes, |mib| mib << 20),
                max_state_bytes: entry.max_state_bytes.unwrap_or(defaults.max_state_bytes),
                wall_clock_per_call: match entry.wall_clock_per_call_ms {
                    Some(0) => None,
                    Some(ms) => Some(std::time::Duration::from_millis(ms)),
                    None => defaults.wall_clock_per_call,
                },
                wasi: match &entry.wasi {
                    Some(text) => text
                        .parse()
                        .map_err(|e| anyhow::anyhow!("tenant {:?}: {e}", entry.name))?,
                    None => defaults.wasi,
                },
            },
            name: entry.name,
        });
    }
    Ok(specs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_patterns_match_exact_names_and_prefixes() {
        let m = SiteMatcher::new(vec!["acme-*".into(), "hq".into()]).unwrap();
        assert!(m.matches("acme-1"));
        assert!(m.matches("hq"));
        assert!(!m.matches("hq2"));
        assert!(!m.matches("globex-1"));
        assert!(SiteMatcher::all().matches("anything"));
        assert!(SiteMatcher::new(vec!["a*b".into()]).is_err());
    }

    #[test]
    fn tenants_file_resolves_paths_and_limits() {
        let text = r#"
            [[tenant]]
            name = "acme"
            sites = ["acme-*"]
            plugins = "acme/plugins"
            pipeline = "acme/pipeline.toml"
            fuel_per_call = 1000
            wall_clock_per_call_ms = 250
            max_memory_mib = 8
            wasi = "deterministic"
            [[tenant]]
            name = "rest"
            sites = ["*"]
            plugins = "/abs/plugins"
        "#;
        let specs = parse_tenants(text, Path::new("/etc/iot"), PluginLimits::default()).unwrap();
        assert_eq!(specs[0].plugin_dir, PathBuf::from("/etc/iot/acme/plugins"));
        assert_eq!(
            specs[0].pipeline_file,
            Some(PathBuf::from("/etc/iot/acme/pipeline.toml"))
        );
        assert_eq!(specs[0].limits.fuel_per_call, Some(1000));
        assert_eq!(
            specs[0].limits.wall_clock_per_call,
            Some(std::time::Duration::from_millis(250))
        );
        assert_eq!(specs[0].limits.max_memory_bytes, 8 << 20);
        assert_eq!(
            specs[0].limits.wasi,
            crate::plugin::WasiAccess::Deterministic
        );
        assert_eq!(specs[1].limits.wasi, crate::plugin::WasiAccess::DenyAll);
        let bad = r#"
            [[tenant]]
            name = "acme"
            sites = ["*"]
            plugins = "p"
            wasi = "everything"
        "#;
        let err = parse_tenants(bad, Path::new("/"), PluginLimits::default()).unwrap_err();
        assert!(format!("{err:#}").contains("\"deterministic\""), "{err:#}");
        assert_eq!(specs[1].plugin_dir, PathBuf::from("/abs/plugins"));
        assert_eq!(specs[1].pipeline_file, None);
        assert_eq!(specs[1].limits, PluginLimits::default());
    }

    #[test]
    fn two_tenants_with_one_name_are_refused() {
        let text = "[[tenant]]\nname=\"a\"\nsites=[\"*\"]\nplugins=\"p\"\n[[tenant]]\nname=\"a\"\nsites=[\"x\"]\nplugins=\"p\"\n";
        let err = format!(
            "{:#}",
            parse_tenants(text, Path::new("."), PluginLimits::default()).unwrap_err()
        );
        assert!(err.contains("twice"), "{err}");
    }
}
