//! WASM aggregation plugins: loading, validating and calling them in a sandbox (SPEC §6).
//!
//! - [`PluginHost`] compiles a component once, checks its imports and exports against the
//!   WIT package `iot:aggregation` (`wit/aggregation.wit`), and reads its [`PluginInfo`].
//! - [`LoadedPlugin`] is a compiled, validated plugin; cheap to clone and to instantiate.
//! - [`PluginInstance`] calls `init`, `fold` and `finish` under a fuel bound and a memory cap,
//!   and turns every failure (trap, exhausted fuel or memory, non-finite value, an error the
//!   plugin returns) into a [`PluginError`]; after a trap it starts a fresh instance.
//!
//! Sandbox: plugins get no WASI capability. A component that imports files, sockets,
//! clocks, randomness or anything else outside the harmless set the Rust toolchain adds
//! (stdio, environment, exit) is refused at load; the harmless imports trap when called.

mod bindings;
mod error;
mod instance;
mod limits;
mod loader;

pub use bindings::{PluginInfo, Sample, Window};
pub use error::PluginError;
pub use instance::PluginInstance;
pub use limits::PluginLimits;
pub use loader::{LoadedPlugin, PluginHost};
