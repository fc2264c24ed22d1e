//! Compiling and validating plugin components.

use std::path::Path;
use std::sync::Arc;

use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine};

use super::bindings::{AggregationPre, PluginInfo};
use super::error::PluginError;
use super::instance::{PluginInstance, StoreState};
use super::limits::PluginLimits;

/// Imports that give a plugin a capability: refused at load.
const FORBIDDEN: [(&str, &str); 5] = [
    ("wasi:filesystem", "no file access"),
    ("wasi:sockets", "no network"),
    ("wasi:http", "no network"),
    (
        "wasi:clocks",
        "no clocks: outputs must depend only on the readings",
    ),
    (
        "wasi:random",
        "no randomness: outputs must depend only on the readings",
    ),
];

/// Imports the Rust toolchain adds to every component (environment, stdio for panic
/// messages, exit): linked as traps, so they grant nothing.
const HARMLESS: [&str; 9] = [
    "wasi:cli/environment",
    "wasi:io/poll",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal",
    "wasi:io/error",
    "wasi:io/streams",
];

/// Compiles and validates plugins; one per process (or per tenant, for its limits).
#[derive(Clone)]
pub struct PluginHost {
    engine: Engine,
    limits: PluginLimits,
}

impl PluginHost {
    pub fn new(limits: PluginLimits) -> anyhow::Result<PluginHost> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.consume_fuel(true);
        let engine = Engine::new(&config)
            .map_err(|e| anyhow::anyhow!("cannot start the WebAssembly engine: {e:#}"))?;
        Ok(PluginHost { engine, limits })
    }

    pub fn limits(&self) -> PluginLimits {
        self.limits
    }

    /// Compiles, validates and describes the plugin in `path`; its name is the file stem.
    pub fn load_file(&self, path: &Path) -> Result<LoadedPlugin, PluginError> {
        let bytes = std::fs::read(path).map_err(|source| PluginError::Read {
            path: path.to_owned(),
            source,
        })?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.load_bytes(&name, &bytes).map_err(|e| match e {
            PluginError::NotAComponent { detail, .. } => PluginError::NotAComponent {
                path: path.to_owned(),
                detail,
            },
            other => other,
        })
    }

    pub fn load_bytes(&self, name: &str, bytes: &[u8]) -> Result<LoadedPlugin, PluginError> {
        let component =
            Component::new(&self.engine, bytes).map_err(|e| PluginError::NotAComponent {
                path: name.into(),
                detail: format!("{e:#}"),
            })?;
        let mut linker: Linker<StoreState> = Linker::new(&self.engine);
        check_imports(name, &component, &self.engine)?;
        linker
            .define_unknown_imports_as_traps(&component)
            .map_err(|e| PluginError::WrongInterface {
                plugin: name.into(),
                detail: format!("{e:#}"),
            })?;
        let pre = linker
            .instantiate_pre(&component)
            .and_then(AggregationPre::new)
            .map_err(|e| PluginError::WrongInterface {
                plugin: name.into(),
                detail: format!("{e:#}"),
            })?;
        let mut loaded = LoadedPlugin {
            inner: Arc::new(Inner {
                name: name.to_owned(),
                info: PluginInfo {
                    name: name.to_owned(),
                    state_version: 0,
                    includes_window_start: false,
                    min_inputs: 0,
                    max_inputs: 0,
                },
                pre,
                engine: self.engine.clone(),
                limits: self.limits,
            }),
        };
        let info = loaded.instantiate()?.info()?;
        if info.min_inputs == 0 || info.min_inputs > info.max_inputs {
            return Err(PluginError::WrongInterface {
                plugin: name.into(),
                detail: format!(
                    "info() says it takes {} to {} inputs",
                    info.min_inputs, info.max_inputs
                ),
            });
        }
        Arc::get_mut(&mut loaded.inner)
            .expect("no other handle yet")
            .info = info;
        Ok(loaded)
    }
}

fn check_imports(name: &str, component: &Component, engine: &Engine) -> Result<(), PluginError> {
    for (import, item) in component.component_type().imports(engine) {
        if let Some((_, why)) = FORBIDDEN
            .iter()
            .find(|(prefix, _)| import.starts_with(prefix))
        {
            return Err(PluginError::ForbiddenImport {
                plugin: name.into(),
                import: import.to_owned(),
                why,
            });
        }
        let harmless = HARMLESS.iter().any(|prefix| import.starts_with(prefix));
        if !harmless || !matches!(item.ty, ComponentItem::ComponentInstance(_)) {
            return Err(PluginError::ForbiddenImport {
                plugin: name.into(),
                import: import.to_owned(),
                why: "the host provides nothing but the fold interface",
            });
        }
    }
    Ok(())
}

pub(super) struct Inner {
    pub name: String,
    pub info: PluginInfo,
    pub pre: AggregationPre<StoreState>,
    pub engine: Engine,
    pub limits: PluginLimits,
}

/// A compiled, validated plugin.
#[derive(Clone)]
pub struct LoadedPlugin {
    pub(super) inner: Arc<Inner>,
}

impl LoadedPlugin {
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub fn info(&self) -> &PluginInfo {
        &self.inner.info
    }

    /// A fresh instance with its own store and memory.
    pub fn instantiate(&self) -> Result<PluginInstance, PluginError> {
        PluginInstance::new(self.inner.clone())
    }
}
