//! The sandbox's import policy: what a plugin component may import, checked at load.
//!
//! Plugins get no WASI capability. Our own plugins are `no_std` and import nothing. A
//! plugin built with Rust's std for wasm32-wasip2 imports a few `wasi:cli` and `wasi:io`
//! interfaces (stdio for panic messages, environment, exit, polling) even if it never
//! uses them: those are linked as stubs that trap when called, so they grant nothing.
//! Any other import is refused at load with an error naming it; the capability families
//! (files, sockets, HTTP, clocks, randomness) with the reason they are refused.

use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Linker};
use wasmtime::Engine;

use super::error::PluginError;

/// Interface families that give a plugin a capability, with why plugins may not have it.
const CAPABILITIES: [(&str, &str); 5] = [
    ("wasi:filesystem/", "no file access"),
    ("wasi:sockets/", "no network access"),
    ("wasi:http/", "no network access"),
    (
        "wasi:clocks/",
        "no clocks: outputs must depend only on the readings",
    ),
    (
        "wasi:random/",
        "no randomness: outputs must depend only on the readings",
    ),
];

/// Interfaces Rust's std for wasm32-wasip2 imports into every component: linked as stubs
/// that trap when called (a panic message written to stderr becomes a trap).
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
/// satisfies the allowed ones with trapping stubs.
pub(super) fn linker_for<T: 'static>(
    plugin: &str,
    engine: &Engine,
    component: &Component,
) -> Result<Linker<T>, PluginError> {
    let mut any = false;
    for (import, item) in component.component_type().imports(engine) {
        any = true;
        if let Some((_, why)) = CAPABILITIES
            .iter()
            .find(|(family, _)| import.starts_with(family))
        {
            return Err(PluginError::ForbiddenImport {
                plugin: plugin.to_owned(),
                import: import.to_owned(),
                why,
            });
        }
        let stubbed = TRAPPING_STUBS.iter().any(|i| import.starts_with(i))
            && matches!(item.ty, ComponentItem::ComponentInstance(_));
        if !stubbed {
            return Err(PluginError::ForbiddenImport {
                plugin: plugin.to_owned(),
                import: import.to_owned(),
                why: "the host provides nothing but what the aggregation world declares",
            });
        }
    }
    let mut linker = Linker::new(engine);
    if any {
        linker
            .define_unknown_imports_as_traps(component)
            .map_err(|e| PluginError::WrongInterface {
                plugin: plugin.to_owned(),
                detail: format!("cannot link its imports: {e}"),
            })?;
    }
    Ok(linker)
}

/// The message of a trapping stub's error, `unknown import: `<name>` has not been defined`,
/// rewritten for the user; `None` for other errors.
pub(super) fn stub_called(message: &str) -> Option<String> {
    let rest = message.split("unknown import: `").nth(1)?;
    let name = rest.split('`').next()?;
    Some(format!(
        "it called {name}, which the sandbox does not provide (a plugin built with std \
         does this when it panics and prints the message, or uses stdio, environment or exit)"
    ))
}
