//! The deterministic WASI a tenant may opt into (`wasi = "deterministic"`): for plugins
//! whose runtime imports clocks, randomness or a filesystem even when their aggregation
//! never uses them (components made by `componentize-py` or `componentize-js` do). It
//! grants nothing a plugin could make its outputs depend on:
//!
//! - clocks: the wall clock always reads [`FIXED_WALL_CLOCK_SECONDS`]; the monotonic clock
//!   starts at 0 in every call and advances [`MONOTONIC_STEP_NS`] per reading, and its
//!   timers are ready at once;
//! - randomness: a fixed-seed generator (SplitMix64), started again in every call, so a
//!   call with the same arguments gets the same "random" bytes; not for secrets;
//! - filesystem: no preopened directory, so nothing can be opened.
//!
//! Everything else of those interfaces traps (`sandbox.rs`). Socket imports are accepted
//! as stubs that trap when called (no connection can be made); HTTP stays refused.
//! Under the default policy (deny-all) none of this is linked and a component importing
//! these interfaces is refused at load.

use wasmtime::component::{ComponentType, Lift, Linker, Lower, Resource};
use wasmtime::StoreContextMut;

use super::instance::Sandbox;
use super::stdio::Pollable;

/// What the wall clock reads: 2000-01-01T00:00:00Z.
pub const FIXED_WALL_CLOCK_SECONDS: u64 = 946_684_800;
/// How far the monotonic clock moves per reading (1 ms).
pub const MONOTONIC_STEP_NS: u64 = 1_000_000;
/// The random generator's seed, the same for every call.
const SEED: u64 = 0x0010_575E_ED0F_107A;
/// The most random bytes one request may ask for (more traps): the host makes them.
const MAX_RANDOM_BYTES: u64 = 1 << 20;

/// The clock and generator of the current call, reset before each call.
#[derive(Default)]
pub(crate) struct CallDeterminism {
    monotonic_ns: u64,
    random: u64,
}

impl CallDeterminism {
    pub fn reset(&mut self) {
        *self = CallDeterminism {
            monotonic_ns: 0,
            random: SEED,
        };
    }

    fn next_monotonic(&mut self) -> u64 {
        self.monotonic_ns += MONOTONIC_STEP_NS;
        self.monotonic_ns
    }

    /// SplitMix64: small, fast, and the same sequence for the same seed everywhere.
    fn next_u64(&mut self) -> u64 {
        self.random = self.random.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.random;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn bytes(&mut self, len: u64) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(len as usize);
        while bytes.len() < len as usize {
            let word = self.next_u64().to_le_bytes();
            let take = (len as usize - bytes.len()).min(8);
            bytes.extend_from_slice(&word[..take]);
        }
        bytes
    }
}

/// `wasi:clocks/wall-clock` `datetime`.
#[derive(ComponentType, Lift, Lower, Clone, Copy)]
#[component(record)]
struct Datetime {
    seconds: u64,
    nanoseconds: u32,
}

/// `wasi:filesystem/types` `descriptor`: never made (there is no preopened directory).
pub(super) struct Descriptor;

/// Import families the deterministic policy accepts, by name prefix. Sockets are accepted
/// only as stubs that trap when called (runtimes import them whether or not a plugin opens
/// one): no call of theirs does anything.
pub(super) const ACCEPTED: [&str; 4] = [
    "wasi:clocks/",
    "wasi:random/",
    "wasi:filesystem/",
    "wasi:sockets/",
];

/// Defines this module's functions for one imported instance `import`; does nothing for
/// other imports.
pub(super) fn define(linker: &mut Linker<Sandbox>, import: &str) -> wasmtime::Result<()> {
    let family = |prefix: &str| import.starts_with(prefix);
    if family("wasi:clocks/wall-clock@0.2.") {
        let fixed = Datetime {
            seconds: FIXED_WALL_CLOCK_SECONDS,
            nanoseconds: 0,
        };
        let mut clock = linker.instance(import)?;
        clock.func_wrap("now", move |_, ()| Ok((fixed,)))?;
        clock.func_wrap("resolution", |_, ()| {
            Ok((Datetime {
                seconds: 1,
                nanoseconds: 0,
            },))
        })?;
    } else if family("wasi:clocks/monotonic-clock@0.2.") {
        let mut clock = linker.instance(import)?;
        clock.func_wrap("now", |mut store: StoreContextMut<'_, Sandbox>, ()| {
            Ok((store.data_mut().determinism.next_monotonic(),))
        })?;
        clock.func_wrap("resolution", |_, ()| Ok((MONOTONIC_STEP_NS,)))?;
        // Timers are ready at once: waiting would only burn the call's fuel.
        clock.func_wrap("subscribe-instant", |_, (_,): (u64,)| {
            Ok((Resource::<Pollable>::new_own(0),))
        })?;
        clock.func_wrap("subscribe-duration", |_, (_,): (u64,)| {
            Ok((Resource::<Pollable>::new_own(0),))
        })?;
    } else if family("wasi:random/random@0.2.") {
        let mut random = linker.instance(import)?;
        random.func_wrap("get-random-bytes", random_bytes)?;
        random.func_wrap("get-random-u64", random_u64)?;
    } else if family("wasi:random/insecure@0.2.") {
        let mut random = linker.instance(import)?;
        random.func_wrap("get-insecure-random-bytes", random_bytes)?;
        random.func_wrap("get-insecure-random-u64", random_u64)?;
    } else if family("wasi:random/insecure-seed@0.2.") {
        linker
            .instance(import)?
            .func_wrap("insecure-seed", |_, ()| Ok(((SEED, !SEED),)))?;
    } else if family("wasi:filesystem/preopens@0.2.") {
        let mut preopens = linker.instance(import)?;
        preopens.func_wrap("get-directories", |_, ()| {
            Ok((Vec::<(Resource<Descriptor>, String)>::new(),))
        })?;
    }
    Ok(())
}

fn random_bytes(
    mut store: StoreContextMut<'_, Sandbox>,
    (len,): (u64,),
) -> wasmtime::Result<(Vec<u8>,)> {
    if len > MAX_RANDOM_BYTES {
        wasmtime::bail!(
            "the plugin asked for {len} random bytes at once; at most {MAX_RANDOM_BYTES}"
        );
    }
    Ok((store.data_mut().determinism.bytes(len),))
}

fn random_u64(mut store: StoreContextMut<'_, Sandbox>, (): ()) -> wasmtime::Result<(u64,)> {
    Ok((store.data_mut().determinism.next_u64(),))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_call_sees_the_same_clock_and_random_sequence() {
        let mut first = CallDeterminism::default();
        first.reset();
        let seen = (first.next_monotonic(), first.next_u64(), first.bytes(11));
        first.reset();
        assert_eq!(
            seen,
            (first.next_monotonic(), first.next_u64(), first.bytes(11))
        );
        assert_eq!(seen.0, MONOTONIC_STEP_NS);
        assert_ne!(
            seen.1,
            first.next_u64(),
            "the sequence moves on within a call"
        );
    }
}
