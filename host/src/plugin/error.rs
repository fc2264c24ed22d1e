use std::path::PathBuf;

/// Why a plugin could not be loaded or a call failed. Messages say what to do next.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("cannot read plugin file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid WebAssembly component ({detail}); build plugins with `cargo build --target wasm32-wasip2`")]
    NotAComponent { path: PathBuf, detail: String },
    #[error("plugin {plugin} imports {import}, which plugins may not use ({why}); remove the code that needs it")]
    ForbiddenImport {
        plugin: String,
        import: String,
        why: &'static str,
    },
    #[error("plugin {plugin} does not implement the WIT interface iot:aggregation/fold@1.0.0 ({detail}); build it against wit/aggregation.wit")]
    WrongInterface { plugin: String, detail: String },
    #[error(
        "plugin {plugin} ran out of fuel (limit {fuel} per call): an endless or too costly loop"
    )]
    OutOfFuel { plugin: String, fuel: u64 },
    #[error("plugin {plugin} trapped: {detail}")]
    Trap { plugin: String, detail: String },
    #[error("plugin {plugin} returned an error: {message}")]
    Returned { plugin: String, message: String },
    #[error("plugin {plugin} returned a non-finite value ({value})")]
    NonFinite { plugin: String, value: f64 },
}
