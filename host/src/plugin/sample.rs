//! [`Sample`]: one reading as a plugin receives it, laid out in the host exactly as the
//! canonical ABI lays out the WIT `record sample` in the plugin's memory.
//!
//! Why its own type rather than the one `bindgen!` generates: the generated struct has
//! Rust's default layout, so every sample had to be written field by field (three stores
//! each). With this layout a batch is one `memcpy` into the plugin's memory (see
//! `lowering.rs`), about four times less work per sample at batch 1,024.

/// One reading handed to a plugin's `fold`: `input` is the position of its series in the
/// output's inputs, `ts_ms` its timestamp (UTC ms), `value` a finite number.
///
/// Canonical-ABI layout of `record sample { input: u32, ts-ms: s64, value: f64 }` on a
/// little-endian machine: input at 0, 4 bytes of padding, ts-ms at 8, value at 16; 24 bytes,
/// aligned to 8. The padding is an explicit, always-zero field so that copying a sample
/// never copies uninitialised bytes; build samples with [`Sample::new`].
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub input: u32,
    padding: u32,
    pub ts_ms: i64,
    pub value: f64,
}

// The memcpy in `lowering.rs` is only right on a little-endian host with this exact layout.
const _: () = assert!(cfg!(target_endian = "little"));
const _: () = assert!(std::mem::size_of::<Sample>() == 24);
const _: () = assert!(std::mem::align_of::<Sample>() == 8);
const _: () = assert!(std::mem::offset_of!(Sample, ts_ms) == 8);
const _: () = assert!(std::mem::offset_of!(Sample, value) == 16);

impl Sample {
    pub const fn new(input: u32, ts_ms: i64, value: f64) -> Sample {
        Sample {
            input,
            padding: 0,
            ts_ms,
            value,
        }
    }
}
