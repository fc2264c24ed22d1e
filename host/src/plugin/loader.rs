//! Compiling and validating plugin components: [`PluginHost`] and [`LoadedPlugin`].

use std::path::Path;
use std::sync::Arc;

use wasmtime::component::{ComponentExportIndex, InstancePre};
use wasmtime::{Config, Engine};

use super::bindings::{AggregationIndices, AggregationPre, PluginInfo};
use super::error::PluginError;
use super::instance::{PluginInstance, Sandbox};
use super::limits::PluginLimits;
use super::rule::{self, RuleExports};
use super::sandbox;

/// Compiles and validates plugins. One per process, or one per tenant if tenants have
/// limits of their own. Cheap to clone (the engine is shared).
#[derive(Clone)]
pub struct PluginHost {
    engine: Engine,
    limits: PluginLimits,
}

impl PluginHost {
    pub fn new(limits: PluginLimits) -> anyhow::Result<PluginHost> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.consume_fuel(limits.fuel_per_call.is_some());
        config.epoch_interruption(limits.wall_clock_per_call.is_some());
        let engine = Engine::new(&config)
            .map_err(|e| anyhow::anyhow!("cannot start the WebAssembly engine: {e}"))?;
        if limits.wall_clock_per_call.is_some() {
            start_epoch_ticker(&engine);
        }
        Ok(PluginHost { engine, limits })
    }

    pub fn limits(&self) -> PluginLimits {
        self.limits
    }

    /// Compiles, validates and describes the plugin component in `path`; its name (for
    /// errors and logs) is the file stem.
    pub fn load_file(&self, path: &Path) -> Result<LoadedPlugin, PluginError> {
        let read_error = |source| PluginError::Read {
            path: path.to_owned(),
            source,
        };
        let size = std::fs::metadata(path).map_err(read_error)?.len();
        if size > PluginLimits::MAX_COMPONENT_BYTES {
            return Err(PluginError::TooLarge {
                path: path.to_owned(),
                bytes: size,
                limit: PluginLimits::MAX_COMPONENT_BYTES,
            });
        }
        let bytes = std::fs::read(path).map_err(read_error)?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        self.load_bytes(&name, &bytes)
    }

    /// Like [`load_file`](Self::load_file), from the component's bytes.
    ///
    /// Compiles once; checks the imports against the sandbox policy and the exports against
    /// the WIT interface; instantiates it once to read and check its `info()`.
    pub fn load_bytes(&self, name: &str, bytes: &[u8]) -> Result<LoadedPlugin, PluginError> {
        let component = wasmtime::component::Component::new(&self.engine, bytes).map_err(|e| {
            PluginError::NotAComponent {
                plugin: name.to_owned(),
                detail: e.to_string(),
            }
        })?;
        let linker = sandbox::linker_for(name, &self.engine, &component, self.limits.wasi)?;
        // Say what the component does export: a plugin built against another version of
        // the WIT shows up as `iot:aggregation/fold@<other version>`.
        let imports: Vec<String> = component
            .component_type()
            .imports(&self.engine)
            .map(|(import, _)| import.to_owned())
            .collect();
        let exports: Vec<String> = component
            .component_type()
            .exports(&self.engine)
            .map(|(export, _)| export.to_owned())
            .collect();
        let wrong = |e: wasmtime::Error| PluginError::WrongInterface {
            plugin: name.to_owned(),
            detail: format!("{e:#}; it exports: {}", exports.join(", ")),
        };
        let pre: InstancePre<Sandbox> = linker.instantiate_pre(&component).map_err(wrong)?;
        let exports = if let Some(rule) = RuleExports::find(&component) {
            Exports::AlarmRule { pre, rule }
        } else {
            let pre = AggregationPre::new(pre).map_err(wrong)?;
            let indices = AggregationIndices::new(pre.instance_pre()).map_err(wrong)?;
            let fold = component
                .get_export_index(None, "iot:aggregation/fold@1.0.0")
                .and_then(|fold| component.get_export_index(Some(&fold), "fold"))
                .ok_or_else(|| PluginError::WrongInterface {
                    plugin: name.to_owned(),
                    detail: "no export iot:aggregation/fold@1.0.0#fold".to_owned(),
                })?;
            Exports::Aggregation { pre, indices, fold }
        };
        let mut inner = Arc::new(Inner {
            name: name.to_owned(),
            hash: build_hash(bytes),
            bytes: Arc::from(bytes),
            info: PluginInfo {
                name: name.to_owned(),
                state_version: 0,
                includes_window_start: false,
                min_inputs: 0,
                max_inputs: 0,
            },
            exports,
            limits: self.limits,
            imports,
        });
        // A probe instance, dropped at the end of the statement.
        let info = PluginInstance::new(inner.clone())?.info()?;
        if info.min_inputs == 0 || info.min_inputs > info.max_inputs {
            return Err(PluginError::WrongInterface {
                plugin: name.to_owned(),
                detail: format!(
                    "its info() says it takes {} to {} inputs; it must take at least 1",
                    info.min_inputs, info.max_inputs
                ),
            });
        }
        Arc::get_mut(&mut inner)
            .expect("the probe instance is gone")
            .info = info;
        Ok(LoadedPlugin { inner })
    }
}

/// What a plugin is, by the interface its component exports, and where its functions are.
pub(super) enum Exports {
    /// `iot:aggregation/fold@1.0.0`.
    Aggregation {
        pre: AggregationPre<Sandbox>,
        indices: AggregationIndices,
        /// `fold`, called through a faster path than the generated bindings (lowering.rs).
        fold: ComponentExportIndex,
    },
    /// `iot:aggregation/alarm-rule@1.0.0` (`rule.rs`).
    AlarmRule {
        pre: InstancePre<Sandbox>,
        rule: RuleExports,
    },
}

/// Whether a plugin computes a value per window or raises alarms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginKind {
    /// Exports `fold`: a value per window (outputs of kind AggDay, AggDayDiff, AggDayRest).
    Aggregation,
    /// Exports `alarm-rule`: alarms as readings arrive (outputs of kind Alarm).
    AlarmRule,
}

impl PluginKind {
    /// The interface that makes a component this kind of plugin.
    pub fn interface(self) -> &'static str {
        match self {
            PluginKind::Aggregation => "iot:aggregation/fold@1.0.0",
            PluginKind::AlarmRule => rule::INTERFACE,
        }
    }
}

/// What every instance of a plugin shares.
pub(super) struct Inner {
    /// The file stem, for errors and logs.
    pub name: String,
    /// SHA-256 of the component, hex: names this build (checkpoints, archive, logs).
    pub hash: String,
    /// The component itself, kept so the build can be archived next to the checkpoints
    /// that refer to it.
    pub bytes: Arc<[u8]>,
    pub info: PluginInfo,
    /// Compiled, linked and type-checked: instantiating is cheap.
    pub exports: Exports,
    pub limits: PluginLimits,
    /// What the component imports (all accepted by the sandbox, or it would not load).
    pub imports: Vec<String>,
}

impl Inner {
    pub fn engine(&self) -> &Engine {
        match &self.exports {
            Exports::Aggregation { pre, .. } => pre.instance_pre().engine(),
            Exports::AlarmRule { pre, .. } => pre.engine(),
        }
    }

    pub fn kind(&self) -> PluginKind {
        match self.exports {
            Exports::Aggregation { .. } => PluginKind::Aggregation,
            Exports::AlarmRule { .. } => PluginKind::AlarmRule,
        }
    }
}

/// A compiled, validated plugin. Cheap to clone and share between threads; each thread
/// (or each user) makes its own [`PluginInstance`].
#[derive(Clone)]
pub struct LoadedPlugin {
    inner: Arc<Inner>,
}

impl LoadedPlugin {
    /// The file stem it was loaded from.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub fn info(&self) -> &PluginInfo {
        &self.inner.info
    }

    /// An aggregation or an alarm rule.
    pub fn kind(&self) -> PluginKind {
        self.inner.kind()
    }

    /// SHA-256 of the component, in hex: two loads of the same bytes are the same build.
    pub fn hash(&self) -> &str {
        &self.inner.hash
    }

    /// The first 12 hex digits of [`hash`](Self::hash), for logs and records.
    pub fn short_hash(&self) -> &str {
        &self.inner.hash[..12]
    }

    /// The component's bytes, as loaded.
    pub fn bytes(&self) -> &Arc<[u8]> {
        &self.inner.bytes
    }

    /// The limits its instances run under.
    pub fn limits(&self) -> PluginLimits {
        self.inner.limits
    }

    /// What the component imports, each with what the sandbox gives it (the sandbox refuses
    /// any other import at load).
    pub fn imports(&self) -> impl Iterator<Item = (&str, &'static str)> {
        self.inner
            .imports
            .iter()
            .map(|import| (import.as_str(), super::sandbox::import_use(import)))
    }

    /// A fresh instance, with its own store and memory, under the host's limits.
    pub fn instantiate(&self) -> Result<PluginInstance, PluginError> {
        PluginInstance::new(self.inner.clone())
    }
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.inner.name)
            .field("hash", &self.short_hash())
            .field("info", &self.inner.info)
            .finish_non_exhaustive()
    }
}

/// SHA-256 of a component, in lowercase hex.
pub fn build_hash(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(bytes);
    let mut hex = String::with_capacity(64);
    for byte in digest {
        use std::fmt::Write;
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// Advances the engine's epoch every [`PluginLimits::DEADLINE_TICK`] while the engine
/// lives: what the wall-clock bound of calls counts. One thread per engine (so per tenant
/// with a bound); it ends once the engine is dropped.
fn start_epoch_ticker(engine: &Engine) {
    let engine = engine.weak();
    std::thread::Builder::new()
        .name("plugin-epoch".into())
        .spawn(move || loop {
            std::thread::sleep(PluginLimits::DEADLINE_TICK);
            match engine.upgrade() {
                Some(engine) => engine.increment_epoch(),
                None => return,
            }
        })
        .expect("cannot start the plugin deadline thread");
}
