//! The fold hot path: a batch of samples lowered into the plugin's memory in one pass.
//!
//! Wasmtime's generic lowering of a `list<record>` stores every field of every element
//! through a bounds-checked accessor (~35 ns per sample, measured). [`Sample`] is laid out
//! in the host exactly as the canonical ABI lays it out in the plugin's memory (see
//! `sample.rs`), so [`SampleBatch`] asks the plugin for the list's memory once, checks the
//! bounds once and copies the whole batch with one `memcpy` (about 0.25 ns per sample; a
//! field-by-field loop took about 1 ns). Its type check is the generic one of
//! `list<sample>`, so a component whose `sample` differs is still refused.
//!
//! This implements wasmtime's `ComponentType`/`Lower` by hand, with items wasmtime marks as
//! outside its stability guarantees (`__internal`): when upgrading wasmtime, re-run
//! `host/tests/plugins.rs` (`samples_reach_the_plugin_bit_for_bit`) and the fold bench.

use std::mem::MaybeUninit;

use wasmtime::component::__internal::{
    CanonicalAbiInfo, InstanceType, InterfaceType, LowerContext,
};
use wasmtime::component::{ComponentType, Lower};
use wasmtime::ValRaw;

use super::bindings;
use super::sample::Sample;

/// Size of one sample in the plugin's memory (canonical ABI).
const SAMPLE_SIZE: usize = 24;
const SAMPLE_ALIGN: u32 = 8;
const _: () = assert!(<bindings::Sample as ComponentType>::SIZE32 == SAMPLE_SIZE);
const _: () = assert!(<bindings::Sample as ComponentType>::ALIGN32 == SAMPLE_ALIGN);
const _: () = assert!(std::mem::size_of::<Sample>() == SAMPLE_SIZE);

/// `list<sample>` as a parameter of `fold`.
pub(super) struct SampleBatch<'a>(pub &'a [Sample]);

unsafe impl ComponentType for SampleBatch<'_> {
    type Lower = <[bindings::Sample] as ComponentType>::Lower;
    const ABI: CanonicalAbiInfo = <[bindings::Sample] as ComponentType>::ABI;

    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        <[bindings::Sample] as ComponentType>::typecheck(ty, types)
    }
}

unsafe impl Lower for SampleBatch<'_> {
    fn linear_lower_to_flat<T>(
        &self,
        cx: &mut LowerContext<'_, T>,
        _ty: InterfaceType,
        dst: &mut MaybeUninit<Self::Lower>,
    ) -> wasmtime::Result<()> {
        let ptr = store(cx, self.0)?;
        // A list is lowered as (pointer, length), each as an i64 ValRaw (as wasmtime does).
        dst.write([ValRaw::i64(ptr as i64), ValRaw::i64(self.0.len() as i64)]);
        Ok(())
    }

    fn linear_lower_to_memory<T>(
        &self,
        cx: &mut LowerContext<'_, T>,
        ty: InterfaceType,
        offset: usize,
    ) -> wasmtime::Result<()> {
        // Only used when parameters do not fit in registers, which `fold`'s do. Checked
        // by `host/tests/plugins.rs` all the same: lowered through the generated type.
        let samples: Vec<bindings::Sample> = self
            .0
            .iter()
            .map(|s| bindings::Sample {
                input: s.input,
                ts_ms: s.ts_ms,
                value: s.value,
            })
            .collect();
        samples.linear_lower_to_memory(cx, ty, offset)
    }
}

/// Allocates the list in the plugin's memory and writes the samples; returns its address.
fn store<T>(cx: &mut LowerContext<'_, T>, samples: &[Sample]) -> wasmtime::Result<usize> {
    let size = samples.len().checked_mul(SAMPLE_SIZE).ok_or_else(|| {
        wasmtime::format_err!("a batch of {} samples is too large", samples.len())
    })?;
    let ptr = cx.realloc(0, 0, SAMPLE_ALIGN, size)?;
    if ptr % SAMPLE_ALIGN as usize != 0 {
        wasmtime::bail!("the plugin's realloc returned a misaligned pointer");
    }
    let memory = cx
        .as_slice_mut()
        .get_mut(ptr..)
        .and_then(|m| m.get_mut(..size))
        .ok_or_else(|| {
            wasmtime::format_err!("the plugin's realloc returned memory out of bounds")
        })?;
    // SAFETY: `Sample` is `repr(C)` with no uninitialised bytes (its padding is a field)
    // and the canonical ABI's layout on this little-endian host (asserted in `sample.rs`);
    // `memory` is exactly `size_of_val(samples)` bytes and cannot overlap host memory.
    unsafe {
        std::ptr::copy_nonoverlapping(samples.as_ptr().cast::<u8>(), memory.as_mut_ptr(), size);
    }
    Ok(ptr)
}
