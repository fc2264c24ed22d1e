//! The sandbox's import policy: what a plugin component may import, checked at load.
//!
//! Plugins get no WASI capability. A plugin built with Rust's std for wasm32-wasip2 (ours
//! are) imports a few `wasi:cli` and `wasi:io` interfaces (stdio for panic messages,
//! environment, exit, polling) even if it never uses them. Those grant nothing: stdout and
//! stderr are captured into the errors of the plugin's calls and the environment is empty
//! (`stdio.rs`); every other function of them is a stub that traps when called.
//! Any other import is refused at load with an error naming it; the capability families
//! (files, sockets, HTTP, clocks, randomness) with the reason they are refused.

use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Linker};
use wasmtime::Engine;

use super::deterministic;
use super::error::PluginError;
use super::instance::Sandbox;
use super::limits::WasiAccess;
use super::stdio;

/// Interface families that give a plugin a capability, with why plugins may not have it.
const CAPABILITIES: [(&str, &str); 5] = [
    (
        "wasi:filesystem/",
        "no file access (a tenant may opt into wasi = \"deterministic\": no directory to open)",
    ),
    ("wasi:sockets/", "no network access"),
    ("wasi:http/", "no network access"),
    (
        "wasi:clocks/",
        "no clocks: outputs must depend only on the readings (a tenant may opt into \
         wasi = \"deterministic\": clocks that always read the same)",
    ),
    (
        "wasi:random/",
        "no randomness: outputs must depend only on the readings (a tenant may opt into \
         wasi = \"deterministic\": a fixed-seed source)",
    ),
];

/// Interfaces Rust's std for wasm32-wasip2 imports into every component: what `stdio.rs`
/// does not implement of them is linked as stubs that trap when called.
const TRAPPING_STUBS: [&str; 9] = [
    "wasi:io/error@0.2.",
    "wasi:io/poll@0.2.",
    "wasi:io/streams@0.2.",
    "wasi:cli/environment@0.2.",
    "wasi:cli/exit@0.2.",
    "wasi:cli/stdin@0.2.",
    "wasi:cli/stdout@0.2.",
    "wasi:cli/stderr@0.2.",
    "wasi:cli/terminal-", // terminal-input, -output, -stdin, -stdout, -stderr
];

/// Checks every import of `component` against the policy and returns the linker that
/// satisfies the allowed ones: captured stdio and an empty environment, trapping stubs for
/// the rest.
pub(super) fn linker_for(
    plugin: &str,
    engine: &Engine,
    component: &Component,
    wasi: WasiAccess,
) -> Result<Linker<Sandbox>, PluginError> {
    let mut linker = Linker::new(engine);
    let cannot_link = |e: wasmtime::Error| PluginError::WrongInterface {
        plugin: plugin.to_owned(),
        detail: format!("cannot link its imports: {e}"),
    };
    let mut any = false;
    for (import, item) in component.component_type().imports(engine) {
        any = true;
        let deterministic = wasi == WasiAccess::Deterministic
            && deterministic::ACCEPTED
                .iter()
                .any(|f| import.starts_with(f));
        if let Some((_, why)) = CAPABILITIES
            .iter()
            .find(|(family, _)| import.starts_with(family))
            .filter(|_| !deterministic)
        {
            return Err(PluginError::ForbiddenImport {
                plugin: plugin.to_owned(),
                import: import.to_owned(),
                why,
            });
        }
        let stubbed = (deterministic || TRAPPING_STUBS.iter().any(|i| import.starts_with(i)))
            && matches!(item.ty, ComponentItem::ComponentInstance(_));
        if !stubbed {
            return Err(PluginError::ForbiddenImport {
                plugin: plugin.to_owned(),
                import: import.to_owned(),
                why: "the host provides nothing but what the aggregation world declares",
            });
        }
        if let ComponentItem::ComponentInstance(instance) = &item.ty {
            define_resources(&mut linker, import, instance, engine).map_err(cannot_link)?;
        }
        stdio::define(&mut linker, import).map_err(cannot_link)?;
        if deterministic {
            deterministic::define(&mut linker, import).map_err(cannot_link)?;
        }
    }
    if any {
        linker
            .define_unknown_imports_as_traps(component)
            .map_err(cannot_link)?;
    }
    Ok(linker)
}

/// Defines the resource types the host implements in an imported instance: each under
/// the same host type in every instance that has it, since interfaces re-export the types
/// they use (`wasi:io/streams` has `error` and `pollable`, `wasi:cli/stderr` has
/// `output-stream`, …) and a function's types must match wherever they come from. Other
/// resources are left to the trapping stubs, which also give each one type everywhere.
fn define_resources(
    linker: &mut Linker<Sandbox>,
    import: &str,
    instance: &wasmtime::component::types::ComponentInstance,
    engine: &Engine,
) -> wasmtime::Result<()> {
    use wasmtime::component::ResourceType;
    let mut defined = linker.instance(import)?;
    for (name, item) in instance.exports(engine) {
        if !matches!(item.ty, ComponentItem::Resource(_)) {
            continue;
        }
        let ty = match name {
            "pollable" => ResourceType::host::<stdio::Pollable>(),
            "output-stream" => ResourceType::host::<stdio::OutputStream>(),
            "error" => ResourceType::host::<stdio::IoError>(),
            "descriptor" => ResourceType::host::<deterministic::Descriptor>(),
            _ => continue,
        };
        defined.resource(name, ty, |_, _| Ok(()))?;
    }
    Ok(())
}

/// The message of a trapping stub's error, `unknown import: `<name>` has not been defined`,
/// rewritten for the user; `None` for other errors.
pub(super) fn stub_called(message: &str) -> Option<String> {
    let rest = message.split("unknown import: `").nth(1)?;
    let name = rest.split('`').next()?;
    Some(format!(
        "it called {name}, which the sandbox does not provide (plugins get no WASI \
         capability; a plugin built with std may call it to read stdin or to exit)"
    ))
}

/// What the sandbox gives an import it accepts, for `validate`: said in a few words.
pub fn import_use(import: &str) -> &'static str {
    let family = |prefix: &str| import.starts_with(prefix);
    if family("wasi:cli/stdout@") || family("wasi:cli/stderr@") {
        "captured into the errors of calls that trap"
    } else if family("wasi:cli/environment@") {
        "empty"
    } else if family("wasi:io/") {
        "for stdout, stderr and timers only"
    } else if family("wasi:clocks/wall-clock@") {
        "deterministic: always 2000-01-01T00:00:00Z"
    } else if family("wasi:clocks/monotonic-clock@") {
        "deterministic: 1 ms per reading from 0 in each call"
    } else if family("wasi:random/") {
        "deterministic: the same fixed-seed sequence in each call"
    } else if family("wasi:filesystem/") {
        "no directory to open"
    } else {
        "traps if called"
    }
}
