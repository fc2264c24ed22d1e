//! How a partition's checkpoint is stored: a map of fields (a Redis hash), each in a
//! compact binary form (postcard, a serde format of varints and raw bytes):
//!
//! - `head`: the format's version byte, the next offset and the stamp convention;
//! - `site:<name>`, one per site of the partition: its snapshot and the plugin builds that
//!   snapshot refers to (so a site's bytes never depend on the other sites).
//!
//! Guarantees: each batch writes the head and only the sites whose bytes changed since the
//! partition's previous write ([`CheckpointWrite`]), deletes the sites that left, and the
//! first write after the partition was placed (restored, rebuilt or started) replaces the
//! whole map. Writes of one partition are applied in order, each in its batch's
//! transaction, so the stored map is always exactly the engine's state after some batch:
//! a write that failed leaves the partition to be placed again (fenced, or data lost and
//! rebuilt), and the write after a placement replaces everything.
//!
//! Duties of the caller: apply a partition's writes in the order they were made, each whole
//! ([`StoredFields::apply`] is what the store must do).
//!
//! Errors: a field that does not decode fails the whole checkpoint, naming the field; the
//! user deletes the key to start that partition over. The JSON checkpoints that hosts
//! before this format wrote are read by [`decode_legacy_json`] and replaced by the next
//! write.

use std::collections::BTreeMap;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::checkpoint::{BuildRef, PartitionCheckpoint, SiteSnapshot};

/// The field holding the head.
pub const HEAD_FIELD: &str = "head";
/// The prefix of a site's field: `site:<name>`.
pub const SITE_FIELD_PREFIX: &str = "site:";
/// First byte of every field: which version of this format wrote it.
const FORMAT_VERSION: u8 = 1;

/// What one batch writes of one partition's checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointWrite {
    pub partition: i32,
    /// The first offset not yet reflected in the store (also inside `head`).
    pub next_offset: i64,
    /// Replace every field (first write since the partition was placed), rather than
    /// update the fields below.
    pub replace: bool,
    /// The encoded head.
    pub head: Vec<u8>,
    /// Sites whose snapshot changed since the partition's previous write, encoded.
    pub sites: Vec<(String, Vec<u8>)>,
    /// Sites the partition no longer holds.
    pub removed: Vec<String>,
}

impl CheckpointWrite {
    /// Bytes this write sends (fields' names and values).
    pub fn bytes(&self) -> usize {
        HEAD_FIELD.len() + self.head.len() + sites_bytes(&self.sites)
    }
}

#[derive(Serialize, Deserialize)]
struct Head {
    next_offset: i64,
    stamps: Option<String>,
}

/// A site's field: its snapshot, whose build indices refer to `builds`.
#[derive(Serialize, Deserialize)]
struct SiteRecord {
    builds: Vec<BuildRef>,
    snapshot: SiteSnapshot,
}

/// Bytes of these site fields (names and values) in the store.
pub fn sites_bytes(sites: &[(String, Vec<u8>)]) -> usize {
    sites
        .iter()
        .map(|(name, bytes)| SITE_FIELD_PREFIX.len() + name.len() + bytes.len())
        .sum()
}

pub fn site_field(site: &str) -> String {
    format!("{SITE_FIELD_PREFIX}{site}")
}

pub fn encode_head(next_offset: i64, stamps: Option<&str>) -> Vec<u8> {
    encode(&Head {
        next_offset,
        stamps: stamps.map(str::to_owned),
    })
}

/// The next offset a stored head names.
pub fn decode_next_offset(head: &[u8]) -> anyhow::Result<i64> {
    Ok(decode::<Head>(head)?.next_offset)
}

/// A site's field; `snapshot`'s build indices refer to `builds`.
pub fn encode_site(builds: Vec<BuildRef>, snapshot: SiteSnapshot) -> Vec<u8> {
    encode(&SiteRecord { builds, snapshot })
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = vec![FORMAT_VERSION];
    postcard::to_io(value, &mut bytes).expect("writing to a Vec cannot fail");
    bytes
}

fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> anyhow::Result<T> {
    match bytes.split_first() {
        Some((&FORMAT_VERSION, rest)) => Ok(postcard::from_bytes(rest)?),
        Some((version, _)) => anyhow::bail!(
            "written in checkpoint format {version}, this host reads format {FORMAT_VERSION}: \
             run the host version that wrote it"
        ),
        None => anyhow::bail!("empty"),
    }
}

/// A checkpoint's fields as stored, changed write after write exactly as the store changes
/// them (the Redis store does the same with DEL, HSET and HDEL).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct StoredFields(BTreeMap<String, Vec<u8>>);

impl StoredFields {
    pub fn new(fields: impl IntoIterator<Item = (String, Vec<u8>)>) -> StoredFields {
        StoredFields(fields.into_iter().collect())
    }

    pub fn apply(&mut self, write: &CheckpointWrite) {
        if write.replace {
            self.0.clear();
        }
        self.0.insert(HEAD_FIELD.to_owned(), write.head.clone());
        for (site, bytes) in &write.sites {
            self.0.insert(site_field(site), bytes.clone());
        }
        for site in &write.removed {
            self.0.remove(&site_field(site));
        }
    }

    /// The checkpoint these fields hold (`None`: no field at all). Each site's builds are
    /// merged into one list, and the site's indices moved to it.
    pub fn decode(&self, partition: i32) -> anyhow::Result<Option<PartitionCheckpoint>> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let head_bytes = self
            .0
            .get(HEAD_FIELD)
            .context("the checkpoint has sites but no head field")?;
        let head: Head = decode(head_bytes).context("the head field does not decode")?;
        let mut checkpoint = PartitionCheckpoint {
            partition,
            next_offset: head.next_offset,
            builds: Vec::new(),
            sites: BTreeMap::new(),
            stamps: head.stamps,
        };
        for (field, bytes) in &self.0 {
            let Some(site) = field.strip_prefix(SITE_FIELD_PREFIX) else {
                continue;
            };
            let record: SiteRecord =
                decode(bytes).with_context(|| format!("field {field} does not decode"))?;
            let snapshot = merge_builds(&mut checkpoint.builds, record)
                .with_context(|| format!("field {field}"))?;
            checkpoint.sites.insert(site.to_owned(), snapshot);
        }
        Ok(Some(checkpoint))
    }
}

/// Moves a site's build indices from its own list to the partition's `builds`.
fn merge_builds(builds: &mut Vec<BuildRef>, record: SiteRecord) -> anyhow::Result<SiteSnapshot> {
    let own_builds = record.builds.len();
    let index: Vec<u32> = record
        .builds
        .into_iter()
        .map(|b| match builds.iter().position(|known| *known == b) {
            Some(i) => i as u32,
            None => {
                builds.push(b);
                (builds.len() - 1) as u32
            }
        })
        .collect();
    let moved = |b: u32| {
        index.get(b as usize).copied().ok_or_else(|| {
            anyhow::anyhow!("a window names build {b}, but the site lists {own_builds}")
        })
    };
    let mut snapshot = record.snapshot;
    for slot in snapshot.days.iter_mut().flat_map(|d| d.slots.iter_mut()) {
        slot.build = slot.build.map(moved).transpose()?;
        slot.held_by = slot.held_by.map(moved).transpose()?;
    }
    Ok(snapshot)
}

/// A checkpoint in the JSON form hosts wrote before this format (a string key).
pub fn decode_legacy_json(json: &[u8]) -> anyhow::Result<PartitionCheckpoint> {
    serde_json::from_slice(json).context("not a checkpoint in the earlier JSON form either")
}
