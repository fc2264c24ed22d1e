//! WASM aggregation plugins: loading, validating and calling them in a sandbox (SPEC §6).
//!
//! - [`PluginHost`] compiles a component once, checks its imports against the sandbox
//!   policy and its exports against the WIT interface `iot:aggregation/fold@1.0.0`
//!   (`wit/aggregation.wit`, documented in `wit/README.md`), and reads its [`PluginInfo`].
//! - [`LoadedPlugin`] is a compiled, validated plugin: `Clone + Send + Sync`, cheap to
//!   instantiate (pre-linked `InstancePre`).
//! - A plugin is an aggregation (exports `fold`: a value per window) or an alarm rule
//!   (exports `alarm-rule`: a `fold` that also returns the alarms it raised; `rule.rs`),
//!   [`PluginKind`].
//! - [`PluginInstance`] calls `init`, `fold` and `finish` under a fuel bound and a memory cap
//!   ([`PluginLimits`]), and turns every failure (trap, exhausted fuel or memory, an error
//!   the plugin returns, a non-finite value) into a [`PluginError`]; after a trap it starts
//!   a fresh instance by itself.
//!
//! Sandbox: plugins get no WASI capability: no files, network, clocks, randomness or
//! environment. A component that imports a capability is refused at load, with an error
//! naming the import (`sandbox.rs`). Of the `wasi:cli`/`wasi:io` interfaces Rust's std
//! adds to every wasip2 component, stdout and stderr are captured into the errors of the
//! plugin's calls (so a panic's message reaches the operator) and the environment is
//! empty (`stdio.rs`); the rest are stubs that trap when called. A tenant may opt into
//! deterministic clocks, randomness and an empty filesystem (`WasiAccess::Deterministic`,
//! `deterministic.rs`) for plugin runtimes that import them.

mod bindings;
mod deterministic;
mod error;
mod instance;
mod limits;
mod loader;
mod lowering;
mod rule;
mod sample;
mod sandbox;
mod stdio;

pub use bindings::{PluginInfo, Window};
pub use error::{bounded_message, PluginError};
pub use instance::PluginInstance;
pub use limits::{PluginLimits, WasiAccess};
pub use loader::{build_hash, LoadedPlugin, PluginHost, PluginKind};
pub use rule::{Alarm, MAX_EVIDENCE_BYTES};
pub use sample::Sample;

#[allow(dead_code)]
fn assert_thread_safety() {
    fn send_sync_clone<T: Send + Sync + Clone>() {}
    fn send<T: Send>() {}
    send_sync_clone::<LoadedPlugin>();
    send_sync_clone::<PluginHost>();
    send::<PluginInstance>();
    send_sync_clone::<Sample>();
}
