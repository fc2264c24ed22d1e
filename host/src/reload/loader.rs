//! Building a tenant from its files: the pipeline file and every plugin it names.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;

use crate::pipeline::Pipeline;
use crate::plugin::{build_hash, LoadedPlugin, PluginHost};
use crate::tenant::{TenantBuild, TenantSpec};

/// Loads a tenant's build from disk. Compiled plugins are cached by content hash, so a
/// reload recompiles only the files that changed.
pub struct TenantLoader {
    pub spec: TenantSpec,
    host: PluginHost,
    compiled: HashMap<String, LoadedPlugin>,
}

impl TenantLoader {
    pub fn new(spec: TenantSpec) -> anyhow::Result<TenantLoader> {
        Ok(TenantLoader {
            host: PluginHost::new(spec.limits)?,
            spec,
            compiled: HashMap::new(),
        })
    }

    /// The plugin host of this tenant (its limits).
    pub fn plugin_host(&self) -> &PluginHost {
        &self.host
    }

    /// Reads the pipeline and every plugin it names, compiling those not seen before, and
    /// checks the whole (each plugin against the WIT and sandbox, each output's arity).
    pub fn load(&mut self) -> anyhow::Result<TenantBuild> {
        let pipeline = Arc::new(match &self.spec.pipeline_file {
            Some(path) => Pipeline::load(path)?,
            None => Pipeline::reference(),
        });
        let mut plugins = HashMap::new();
        let mut used = HashMap::new();
        for name in pipeline.plugin_names() {
            let path = plugin_path(&self.spec.plugin_dir, name);
            let bytes = std::fs::read(&path).with_context(|| {
                format!(
                    "cannot read plugin {name:?} at {} (build plugins with scripts/build-plugins, \
                     or copy the .wasm into the tenant's plugin folder)",
                    path.display()
                )
            })?;
            let hash = build_hash(&bytes);
            let plugin = match self.compiled.get(&hash) {
                Some(p) if p.name() == name => p.clone(),
                _ => self
                    .host
                    .load_bytes(name, &bytes)
                    .with_context(|| format!("plugin {}", path.display()))?,
            };
            used.insert(hash, plugin.clone());
            plugins.insert(name.to_owned(), plugin);
        }
        // Keep only what the current build uses: the cache does not grow with every deploy.
        self.compiled = used;
        let build = TenantBuild { pipeline, plugins };
        build.check()?;
        Ok(build)
    }
}

pub fn plugin_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.wasm"))
}
