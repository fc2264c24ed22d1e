//! The durable state of one input partition: the next offset to read and the open day
//! windows of every site seen in it. It is written in the same Redis transaction as the
//! samples its batch produced, so state, offsets and stored values never disagree.
//!
//! Outputs are named (`name:kind`), not numbered, so a checkpoint survives pipeline edits;
//! accumulators name the plugin build that wrote them (by content hash) so a restart
//! finishes each window with the build the swap rules give it.
//!
//! These types are the checkpoint as the engine restores it. How it is stored (a compact
//! binary head and one field per site, written only where something changed) is
//! `checkpoint_format.rs`; the JSON form of these types is what hosts before that wrote,
//! still read.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// State of one partition after a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionCheckpoint {
    pub partition: i32,
    /// The first offset not yet reflected in the store.
    pub next_offset: i64,
    /// The plugin builds the slots below refer to (by index).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub builds: Vec<BuildRef>,
    pub sites: BTreeMap<String, SiteSnapshot>,
    /// The stamp convention the windows were filed under (absent: interval-end). A host
    /// started with another `--stamps` refuses the checkpoint rather than mix the two.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stamps: Option<String>,
}

/// A plugin build, by the SHA-256 of its component; its bytes are archived in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildRef {
    pub hash: String,
    pub state_version: u32,
}

/// A site's event-time clock and retained day windows. (No field of this or the types
/// below may be skipped when serialised: the binary form is positional.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteSnapshot {
    pub newest_ts: i64,
    /// The tenant's outputs (`name:kind`) when the snapshot was taken; slots refer to them
    /// by index.
    #[serde(default)]
    pub outputs: Vec<String>,
    /// Outputs added or redefined while the site was running: they compute only windows
    /// starting after this instant (by index into `outputs`).
    #[serde(default)]
    pub output_from: Vec<(u32, i64)>,
    pub days: Vec<DaySnapshot>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaySnapshot {
    pub end_ms: i64,
    pub emitted: bool,
    pub slots: Vec<SlotSnapshot>,
}

/// One output's window: the plugin accumulator, the build that wrote it, the last value
/// emitted, and — when a plugin failed on it — the samples held for a fixed build. Bytes
/// are base64 in JSON and raw in the binary form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlotSnapshot {
    pub output: u32,
    #[serde(default, with = "bytes")]
    pub state: Option<Vec<u8>>,
    /// Index into [`PartitionCheckpoint::builds`] of the build that wrote `state`.
    #[serde(default)]
    pub build: Option<u32>,
    #[serde(default)]
    pub value: Option<f64>,
    /// Index into [`PartitionCheckpoint::builds`] of the build that failed on this window.
    #[serde(default)]
    pub held_by: Option<u32>,
    /// Samples not folded yet because the plugin failed (20 bytes each).
    #[serde(default, with = "bytes")]
    pub pending: Option<Vec<u8>>,
}

/// Optional bytes as base64 text in human-readable formats (JSON) and as raw bytes in
/// binary ones.
mod bytes {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

    pub fn serialize<S: Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match bytes {
            None => s.serialize_none(),
            Some(b) if s.is_human_readable() => s.serialize_some(&B64.encode(b)),
            Some(b) => s.serialize_some(&serde_bytes_ref(b)),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        if d.is_human_readable() {
            let text: Option<String> = Option::deserialize(d)?;
            text.map(|t| B64.decode(t).map_err(serde::de::Error::custom))
                .transpose()
        } else {
            let raw: Option<ByteBuf> = Option::deserialize(d)?;
            Ok(raw.map(|b| b.0))
        }
    }

    /// Serialises as a byte string (not a sequence of numbers).
    fn serde_bytes_ref(bytes: &[u8]) -> impl serde::Serialize + '_ {
        struct Bytes<'a>(&'a [u8]);
        impl serde::Serialize for Bytes<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(self.0)
            }
        }
        Bytes(bytes)
    }

    /// Deserialises a byte string into an owned buffer.
    struct ByteBuf(Vec<u8>);

    impl<'de> Deserialize<'de> for ByteBuf {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ByteBuf, D::Error> {
            struct Visitor;
            impl<'de> serde::de::Visitor<'de> for Visitor {
                type Value = ByteBuf;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("bytes")
                }
                fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<ByteBuf, E> {
                    Ok(ByteBuf(v.to_vec()))
                }
                fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<ByteBuf, E> {
                    Ok(ByteBuf(v))
                }
            }
            d.deserialize_bytes(Visitor)
        }
    }
}
