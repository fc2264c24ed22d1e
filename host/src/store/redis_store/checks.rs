//! What a batch checks before its transaction: that Redis is the server this store wrote
//! to, or still holds what it wrote (a restart without persistence, a failover to a
//! replica behind, a replacement), and that every partition's claim is still this store's.
//! The outcomes are the [`StoreError`]s the runner acts on: `DataLost`, `Fenced`,
//! `ClaimLost`; and a [`SpuriousAbort`], retried here.

use anyhow::Context as _;

use super::RedisStore;
use crate::engine::checkpoint_format::{self, HEAD_FIELD};
use crate::engine::Effects;
use crate::store::redis_common::is_transient;
use crate::store::StoreError;

/// What is checked before a batch's transaction.
pub(super) struct Checks {
    pub(super) run_id: String,
    /// Partitions another host claimed after this store did.
    pub(super) taken_over: Vec<i32>,
    /// Partitions whose claim by this store Redis no longer holds.
    pub(super) claims_lost: Vec<i32>,
}

/// A batch's EXEC was aborted although every owner key still holds this store's claim.
/// Redis marks a watched key touched whenever a command writes it, and a Redis replaying
/// its append-only file after a restart writes every key it loads: a WATCH that reached it
/// while it loaded (WATCH is served during loading; the MGET beside it was refused, and the
/// attempt retried) aborts the next EXEC on that connection. Nothing was written; the batch
/// is retried (each attempt starts with UNWATCH). Seen in the outage test, where it was
/// taken for another host's claim and the host fenced itself for good.
#[derive(Debug, thiserror::Error)]
#[error(
    "the batch's transaction was aborted although this host's claims still hold (Redis \
     reloading its data?)"
)]
pub(super) struct SpuriousAbort;

impl RedisStore {
    /// After an outage: are the checkpoints this store wrote still there? Every partition
    /// whose checkpoint is gone or older than the last one written is lost.
    pub(super) async fn check_nothing_lost(&mut self) -> anyhow::Result<()> {
        if self.written.is_empty() {
            return Ok(());
        }
        let partitions: Vec<i32> = self.written.keys().copied().collect();
        let mut pipe = redis::pipe();
        for &p in &partitions {
            pipe.cmd("HGET").arg(self.checkpoint_key(p)).arg(HEAD_FIELD);
        }
        let found: Vec<Option<Vec<u8>>> = pipe.query_async(&mut self.conn).await?;
        let mut lost = Vec::new();
        for (&p, head) in partitions.iter().zip(found) {
            let stored = head.and_then(|h| checkpoint_format::decode_next_offset(&h).ok());
            if stored.is_none_or(|offset| offset < self.written[&p]) {
                lost.push((p, self.written[&p], stored));
            }
        }
        if lost.is_empty() {
            return Ok(());
        }
        for (p, _, _) in &lost {
            self.written.remove(p);
        }
        self.recreate_series = true;
        Err(StoreError::DataLost { lost }.into())
    }

    /// A server with another `run_id` than the last one written to (restarted, failed
    /// over, replaced) must still hold this store's checkpoints, or the data is lost. (One
    /// question per batch buys this: a Redis restarted without persistence looks like any
    /// other to the client, which reconnects on its own, even while idle.)
    pub(super) async fn check_server(&mut self, run_id: String) -> anyhow::Result<()> {
        if self.server_run_id.as_ref() == Some(&run_id) {
            return Ok(());
        }
        if self.server_run_id.is_some() {
            let checked = self.check_nothing_lost().await;
            if checked.as_ref().is_err_and(is_transient) {
                return checked; // not checked yet: the next attempt checks again
            }
            self.server_run_id = Some(run_id);
            checked
        } else {
            self.server_run_id = Some(run_id);
            Ok(())
        }
    }

    /// In one round trip: the server's `run_id`, and a WATCH of the owner keys of the
    /// batch's partitions with their values. A partition whose owner epoch is newer than
    /// this store's claim was `taken_over` by another host; one whose epoch is gone or
    /// older had its claim lost by Redis (`claims_lost`: epochs only grow, see
    /// `claim_command`).
    pub(super) async fn watch_and_check(&mut self, effects: &Effects) -> anyhow::Result<Checks> {
        let (partitions, keys) = self.claimed_in(effects);
        let mut pipe = redis::pipe();
        // A WATCH of an earlier attempt may linger on this connection, marked touched (see
        // `SpuriousAbort`): start from none.
        pipe.cmd("UNWATCH").ignore();
        pipe.cmd("INFO").arg("server");
        if !keys.is_empty() {
            pipe.cmd("WATCH").arg(&keys).ignore();
            pipe.cmd("MGET").arg(&keys);
        }
        let replies: Vec<redis::Value> = pipe.query_async(&mut self.conn).await?;
        let mut replies = replies.into_iter();
        let info: String = redis::from_redis_value(replies.next().context("no INFO reply")?)?;
        let run_id = info
            .lines()
            .find_map(|line| line.strip_prefix("run_id:"))
            .map(|id| id.trim().to_owned())
            .context("Redis INFO server has no run_id")?;
        let owners: Vec<Option<i64>> = match replies.next() {
            Some(reply) => redis::from_redis_value(reply)?,
            None => Vec::new(),
        };
        let (taken_over, claims_lost) = self.compare_claims(&partitions, &owners);
        Ok(Checks {
            run_id,
            taken_over,
            claims_lost,
        })
    }

    /// The batch's partitions this store claimed, and their owner keys.
    fn claimed_in(&self, effects: &Effects) -> (Vec<i32>, Vec<String>) {
        let partitions: Vec<i32> = effects
            .checkpoints
            .iter()
            .map(|c| c.partition)
            .filter(|p| self.epochs.contains_key(p))
            .collect();
        let keys = partitions.iter().map(|&p| self.owner_key(p)).collect();
        (partitions, keys)
    }

    /// Of `partitions` and the owner epochs found for them: those another host claimed
    /// since this store did, and those whose claim Redis lost.
    pub(super) fn compare_claims(
        &self,
        partitions: &[i32],
        owners: &[Option<i64>],
    ) -> (Vec<i32>, Vec<i32>) {
        let (mut taken_over, mut claims_lost) = (Vec::new(), Vec::new());
        for (&p, owner) in partitions.iter().zip(owners) {
            let ours = self.epochs[&p];
            match *owner {
                Some(epoch) if epoch == ours => {}
                Some(epoch) if epoch > ours => taken_over.push(p),
                _ => claims_lost.push(p),
            }
        }
        (taken_over, claims_lost)
    }

    /// The batch's EXEC was aborted: a watched owner key was touched between the check and
    /// the EXEC. Reads the owners again to say why: a newer claim ([`StoreError::Fenced`]),
    /// a lost one ([`StoreError::ClaimLost`]), or none of these ([`SpuriousAbort`]).
    pub(super) async fn why_aborted(&mut self, effects: &Effects) -> anyhow::Error {
        let (partitions, keys) = self.claimed_in(effects);
        let owners: Vec<Option<i64>> = match redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut self.conn)
            .await
        {
            Ok(owners) => owners,
            Err(e) => return e.into(),
        };
        let (taken_over, claims_lost) = self.compare_claims(&partitions, &owners);
        if !taken_over.is_empty() {
            StoreError::Fenced {
                partitions: taken_over,
            }
            .into()
        } else if !claims_lost.is_empty() {
            StoreError::ClaimLost {
                partitions: claims_lost,
            }
            .into()
        } else {
            SpuriousAbort.into()
        }
    }
}
