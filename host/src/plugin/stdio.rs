//! A plugin's stdio, captured: what a plugin built with Rust's std (or any language's
//! runtime) prints, above all the message of a panic, is kept in its store and added to
//! the error of a call that traps. It grants nothing: output goes nowhere else, the
//! environment and the arguments are empty, and there is no input.
//!
//! Linked only for the `wasi:cli`/`wasi:io` interfaces a component imports, under the exact
//! names (and versions) it imports them with; every other function of those interfaces
//! stays a trapping stub (`sandbox.rs`).

use wasmtime::component::{ComponentType, Lift, Linker, Lower, Resource};
use wasmtime::StoreContextMut;

use super::instance::Sandbox;

/// The end of what a plugin printed during one call. A panic's message comes last, so
/// that is what is kept when a plugin prints more.
#[derive(Default)]
pub(crate) struct CapturedOutput {
    bytes: Vec<u8>,
}

impl CapturedOutput {
    /// How many of the last bytes printed are kept (errors are cut to 2 KiB anyway).
    pub const KEPT_BYTES: usize = 2048;

    fn push(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
        // Trimmed in bulk, so a plugin printing byte by byte costs no quadratic copying.
        if self.bytes.len() > 2 * Self::KEPT_BYTES {
            let excess = self.bytes.len() - Self::KEPT_BYTES;
            self.bytes.drain(..excess);
        }
    }

    /// Forgets what was printed (before each call).
    pub fn clear(&mut self) {
        self.bytes.clear();
    }

    /// What was printed, as text, trimmed; `None` if nothing.
    pub fn take(&mut self) -> Option<String> {
        let start = self.bytes.len().saturating_sub(Self::KEPT_BYTES);
        let text = String::from_utf8_lossy(&self.bytes[start..])
            .trim()
            .to_owned();
        self.bytes.clear();
        (!text.is_empty()).then_some(text)
    }
}

/// `wasi:io/streams` `output-stream`: stdout and stderr, both captured.
pub(super) struct OutputStream;
/// `wasi:io/error` `error`: never made (a captured write does not fail).
pub(super) struct IoError;
/// `wasi:io/poll` `pollable` of an output stream: always ready (the capture never blocks).
pub(super) struct Pollable;

/// `wasi:io/streams` `stream-error`, for the functions' types.
#[derive(ComponentType, Lift, Lower)]
#[component(variant)]
enum StreamError {
    #[component(name = "last-operation-failed")]
    #[allow(dead_code)]
    LastOperationFailed(Resource<IoError>),
    #[component(name = "closed")]
    #[allow(dead_code)]
    Closed,
}

type StreamResult<T> = wasmtime::Result<(Result<T, StreamError>,)>;

/// How many bytes `check-write` allows at once (the capture takes any amount).
const WRITE_PERMIT: u64 = 4096;
/// Resource handles the host hands out (the capture does not tell the two apart).
const STDOUT: u32 = 1;
const STDERR: u32 = 2;

/// Defines this module's functions for one imported instance `import` (named as the
/// component imports it); does nothing for other imports.
pub(super) fn define(linker: &mut Linker<Sandbox>, import: &str) -> wasmtime::Result<()> {
    let family = |prefix: &str| import.starts_with(prefix);
    // The resource types (`error`, `pollable`, `output-stream`) are defined for every
    // instance that has them by `sandbox::define_resources`.
    if family("wasi:io/poll@0.2.") {
        let mut poll = linker.instance(import)?;
        poll.func_wrap("[method]pollable.ready", |_, _: (Resource<Pollable>,)| {
            Ok((true,))
        })?;
        poll.func_wrap("[method]pollable.block", |_, _: (Resource<Pollable>,)| {
            Ok(())
        })?;
        // Only our pollables exist, and they are all ready.
        poll.func_wrap("poll", |_, (ready,): (Vec<Resource<Pollable>>,)| {
            Ok(((0..ready.len() as u32).collect::<Vec<u32>>(),))
        })?;
    } else if family("wasi:io/streams@0.2.") {
        define_streams(linker, import)?;
    } else if family("wasi:cli/stdout@0.2.") {
        let mut stdout = linker.instance(import)?;
        stdout.func_wrap("get-stdout", |_, ()| {
            Ok((Resource::<OutputStream>::new_own(STDOUT),))
        })?;
    } else if family("wasi:cli/stderr@0.2.") {
        let mut stderr = linker.instance(import)?;
        stderr.func_wrap("get-stderr", |_, ()| {
            Ok((Resource::<OutputStream>::new_own(STDERR),))
        })?;
    } else if family("wasi:cli/environment@0.2.") {
        // Empty: outputs must depend only on the readings (std asks, e.g. for
        // RUST_BACKTRACE when it prints a panic).
        let mut environment = linker.instance(import)?;
        environment.func_wrap("get-environment", |_, ()| {
            Ok((Vec::<(String, String)>::new(),))
        })?;
        environment.func_wrap("get-arguments", |_, ()| Ok((Vec::<String>::new(),)))?;
        environment.func_wrap("initial-cwd", |_, ()| Ok((None::<String>,)))?;
    }
    Ok(())
}

fn define_streams(linker: &mut Linker<Sandbox>, import: &str) -> wasmtime::Result<()> {
    type Write = (Resource<OutputStream>, Vec<u8>);
    fn captured(mut store: StoreContextMut<'_, Sandbox>, (_, bytes): Write) -> StreamResult<()> {
        store.data_mut().output.push(&bytes);
        Ok((Ok(()),))
    }
    fn flushed(_: StoreContextMut<'_, Sandbox>, _: (Resource<OutputStream>,)) -> StreamResult<()> {
        Ok((Ok(()),))
    }
    let mut streams = linker.instance(import)?;
    streams.func_wrap(
        "[method]output-stream.check-write",
        |_, _: (Resource<OutputStream>,)| -> StreamResult<u64> { Ok((Ok(WRITE_PERMIT),)) },
    )?;
    streams.func_wrap("[method]output-stream.write", captured)?;
    streams.func_wrap("[method]output-stream.blocking-write-and-flush", captured)?;
    streams.func_wrap(
        "[method]output-stream.subscribe",
        |_, _: (Resource<OutputStream>,)| Ok((Resource::<Pollable>::new_own(0),)),
    )?;
    streams.func_wrap("[method]output-stream.flush", flushed)?;
    streams.func_wrap("[method]output-stream.blocking-flush", flushed)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_capture_keeps_the_end_of_what_was_printed() {
        let mut output = CapturedOutput::default();
        assert_eq!(output.take(), None);
        for _ in 0..10_000 {
            output.push(b"x");
        }
        output.push(b"panicked at src/lib.rs:1:1:\nthe message\n");
        let text = output.take().unwrap();
        assert!(text.ends_with("the message"), "{text}");
        assert_eq!(text.len(), CapturedOutput::KEPT_BYTES - 1); // the newline is trimmed
        assert_eq!(output.take(), None);
    }
}
