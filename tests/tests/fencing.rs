//! Two hosts' stores on one partition, on the real Redis: the one that claimed it last is
//! the only one whose batches land. A host that lost the partition (frozen past its
//! session timeout while the group gave it away) writes nothing of its late batch. A claim
//! Redis itself lost is told apart from another host's claim.

use iot_host::engine::{Effects, Engine};
use iot_host::store::{RedisStore, Store, StoreError};
use iot_protocol::{Kind, SeriesName};
use system_tests::fixture::{Sink, TestScope};
use system_tests::redis_read;
use system_tests::store_batches::{
    cluster_store, engine_at_the_start, redis_store as store, th1_reading, PARTITION, TOPIC,
};

/// 2020-01-01T00:15:00Z and 00:30, the first two 15-minute readings of a day.
const FIRST_STEP: &str = "2020-01-01T00:15:00Z";
const SECOND_STEP: &str = "2020-01-01T00:30:00Z";

/// The batch a host makes of one TH1 reading of `value` at offset 0 of the partition.
fn batch_of_one_reading(scope: &TestScope, value: f64) -> Effects {
    first_batch_of(&mut engine_at_the_start(scope), value)
}

/// An engine's first batch: one TH1 reading of s1 at offset 0.
fn first_batch_of(engine: &mut Engine, value: f64) -> Effects {
    engine.process(&th1_reading(0, "s1", FIRST_STEP, value));
    engine.finish_batch()
}

/// The batch after `first_batch_of` from the same engine: one more reading of s1, whose
/// series the engine announced in the first batch and does not announce again.
fn next_batch_of(engine: &mut Engine, value: f64) -> Effects {
    engine.process(&th1_reading(1, "s1", SECOND_STEP, value));
    engine.finish_batch()
}

fn fenced_partitions(result: anyhow::Result<()>) -> Vec<i32> {
    match result {
        Ok(()) => panic!("the batch was written, but another store had claimed its partition"),
        Err(e) => match e.downcast_ref::<StoreError>() {
            Some(StoreError::Fenced { partitions }) => partitions.clone(),
            _ => panic!("expected a fenced batch, got: {e:#}"),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_last_host_to_take_a_partition_over_can_write_it() {
    let scope = TestScope::new("only_the_last_owner_writes");
    let raw_key = format!("{}s1:TH1:raw", scope.key_prefix());
    let checkpoint_key = format!("{}_checkpoint:{TOPIC}:{PARTITION}", scope.key_prefix());
    let mut conn = scope.redis_conn().await;
    let mut old_owner = store(&scope).await;
    let mut new_owner = store(&scope).await;

    // The old owner took the partition over, then the group gave it to the new owner.
    assert!(old_owner
        .load_checkpoint(PARTITION)
        .await
        .unwrap()
        .is_none());
    assert!(new_owner
        .load_checkpoint(PARTITION)
        .await
        .unwrap()
        .is_none());

    // The old owner's late batch is refused whole: no series, no sample, no checkpoint.
    let late = old_owner.commit(&batch_of_one_reading(&scope, 1.5)).await;
    assert_eq!(fenced_partitions(late), vec![PARTITION]);
    let series_exists: bool = redis::cmd("EXISTS")
        .arg(&raw_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!series_exists, "the fenced batch created its series");
    let checkpoint_exists: bool = redis::cmd("EXISTS")
        .arg(&checkpoint_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!checkpoint_exists, "the fenced batch wrote its checkpoint");

    // The new owner writes; then the partition comes back to the first host, which
    // resumes from the new owner's checkpoint and fences it in turn.
    new_owner
        .commit(&batch_of_one_reading(&scope, 2.5))
        .await
        .expect("the owner's batch is written");
    let stored: Vec<f64> = redis_read::range(&mut conn, &raw_key)
        .await
        .into_values()
        .collect();
    assert_eq!(stored, vec![2.5]);
    let resumed = old_owner.load_checkpoint(PARTITION).await.unwrap();
    assert_eq!(resumed.map(|c| c.next_offset), Some(1));
    let stale = new_owner.commit(&batch_of_one_reading(&scope, 3.5)).await;
    assert_eq!(fenced_partitions(stale), vec![PARTITION]);
    let stored: Vec<f64> = redis_read::range(&mut conn, &raw_key)
        .await
        .into_values()
        .collect();
    assert_eq!(
        stored,
        vec![2.5],
        "the fenced host overwrote the owner's value"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_of_a_fenced_batch_are_created_before_a_later_batch_uses_them() {
    let scope = TestScope::new("series_of_a_fenced_batch");
    let raw_key = format!("{}s1:TH1:raw", scope.key_prefix());
    let mut conn = scope.redis_conn().await;
    let mut store = store(&scope).await;
    let mut rival = store_of_another_host(&scope).await;

    // A fenced batch: refused whole, its new series with it.
    assert!(store.load_checkpoint(PARTITION).await.unwrap().is_none());
    assert!(rival.load_checkpoint(PARTITION).await.unwrap().is_none());
    let mut engine = engine_at_the_start(&scope);
    let fenced = store.commit(&first_batch_of(&mut engine, 1.5)).await;
    assert_eq!(fenced_partitions(fenced), vec![PARTITION]);

    // The partition comes back; the engine's next batch refers to the series it announced.
    store.load_checkpoint(PARTITION).await.unwrap();
    store
        .commit(&next_batch_of(&mut engine, 2.5))
        .await
        .expect("the batch after a fenced one is written");
    assert_eq!(
        redis_read::duplicate_policy(&mut conn, &raw_key).await,
        "last",
        "the series was created by the store, not auto-created by TS.MADD"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_of_a_discarded_batch_are_created_before_a_later_batch_uses_them() {
    let scope = TestScope::new("series_of_a_discarded_batch");
    let raw_key = format!("{}s1:TH1:raw", scope.key_prefix());
    let mut conn = scope.redis_conn().await;
    let mut store = store(&scope).await;
    assert!(store.load_checkpoint(PARTITION).await.unwrap().is_none());

    // The durable side discards a batch (built on lost state) and hands its series over.
    let mut engine = engine_at_the_start(&scope);
    let discarded = first_batch_of(&mut engine, 4.5);
    store.keep_series(&discarded.new_series);
    store
        .commit(&next_batch_of(&mut engine, 5.5))
        .await
        .expect("a batch using series of a discarded batch is written");
    assert_eq!(
        redis_read::duplicate_policy(&mut conn, &raw_key).await,
        "last"
    );
}

/// Redis lost this host's claim (its owner key is gone, as after a restart that dropped
/// its last second of writes). No other host claimed the partition, so the batch is refused
/// as a lost claim, not as a fence (a fenced host would skip the partition's records until
/// a rebalance that, with one host, never comes). Claimed again, the partition is written,
/// and its new epoch is above the lost one although Redis forgot it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_redis_lost_is_refused_as_lost_and_claimed_again_not_fenced() {
    let scope = TestScope::new("claim_lost");
    let host = store(&scope).await;
    claim_lost_is_claimed_again(&scope, host).await;
}

/// The same on a cluster, where the checkpoint's script tells a lost claim from a newer one
/// (the batch's samples are written in the first round there, and rewritten with the same
/// values after the new claim).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_redis_cluster_a_claim_the_shard_lost_is_refused_as_lost_and_claimed_again() {
    let scope = TestScope::on("cluster_claim_lost", Sink::RedisCluster);
    let host = cluster_store(&scope).await;
    claim_lost_is_claimed_again(&scope, host).await;
}

async fn claim_lost_is_claimed_again(scope: &TestScope, mut host: impl Store) {
    let owner_key = scope.owner_key(TOPIC, PARTITION);
    let checkpoint_key = scope.checkpoint_key(TOPIC, PARTITION);
    let raw_key =
        SeriesName::new("s1", "TH1", Kind::Raw).key_in(&scope.key_prefix(), scope.key_layout());
    let mut conn = scope.redis_conn().await;
    assert!(host.load_checkpoint(PARTITION).await.unwrap().is_none());
    let lost_epoch = owner_epoch(&mut conn, &owner_key).await;

    let _: () = redis::cmd("DEL")
        .arg(&owner_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let refused = host.commit(&batch_of_one_reading(scope, 1.5)).await;
    match refused.as_ref().map_err(|e| e.downcast_ref::<StoreError>()) {
        Err(Some(StoreError::ClaimLost { partitions })) => {
            assert_eq!(partitions, &vec![PARTITION])
        }
        other => panic!("expected the batch refused as a lost claim, got {other:?}"),
    }
    let checkpoint_exists: bool = redis::cmd("EXISTS")
        .arg(&checkpoint_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        !checkpoint_exists,
        "the batch of a lost claim wrote its checkpoint"
    );

    // An epoch is at least the claimer's clock in ms, so a claim in the same millisecond
    // as the lost one could tie with it: claim again once the clock has passed it.
    while now_ms() <= lost_epoch {
        tokio::task::yield_now().await;
    }
    assert!(host.load_checkpoint(PARTITION).await.unwrap().is_none());
    let new_epoch = owner_epoch(&mut conn, &owner_key).await;
    assert!(
        new_epoch > lost_epoch,
        "the claim after the loss ({new_epoch}) is not above the lost one ({lost_epoch})"
    );
    host.commit(&batch_of_one_reading(scope, 1.5))
        .await
        .expect("the batch of the partition claimed again is written");
    let stored: Vec<f64> = redis_read::range(&mut conn, &raw_key)
        .await
        .into_values()
        .collect();
    assert_eq!(stored, vec![1.5]);
    let next_offset = host.load_checkpoint(PARTITION).await.unwrap();
    assert_eq!(next_offset.map(|c| c.next_offset), Some(1));
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_millis() as i64
}

async fn owner_epoch(conn: &mut iot_host::store::RedisReader, owner_key: &str) -> i64 {
    redis::cmd("GET")
        .arg(owner_key)
        .query_async(conn)
        .await
        .expect("the partition's owner epoch")
}

/// A second store on the same Redis and prefix: another host of the group.
async fn store_of_another_host(scope: &TestScope) -> RedisStore {
    store(scope).await
}

/// On a Redis Cluster a batch is not one transaction, so fencing is per site: once the new
/// owner has written a site, the old owner can write nothing more to it, nor any checkpoint
/// of the partition. (What an old owner writes before that is overwritten by the new
/// owner's replay of the same records: see `store/cluster_store.rs`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_redis_cluster_a_host_that_lost_a_partition_cannot_overwrite_what_the_new_owner_wrote()
{
    let scope = TestScope::on("cluster_only_the_last_owner_writes", Sink::RedisCluster);
    let raw_key =
        SeriesName::new("s1", "TH1", Kind::Raw).key_in(&scope.key_prefix(), scope.key_layout());
    let checkpoint_key = scope.checkpoint_key(TOPIC, PARTITION);
    let mut conn = scope.redis_conn().await;
    let mut old_owner = cluster_store(&scope).await;
    let mut new_owner = cluster_store(&scope).await;
    assert!(old_owner
        .load_checkpoint(PARTITION)
        .await
        .unwrap()
        .is_none());
    assert!(new_owner
        .load_checkpoint(PARTITION)
        .await
        .unwrap()
        .is_none());

    new_owner
        .commit(&batch_of_one_reading(&scope, 2.5))
        .await
        .expect("the owner's batch is written");
    let late = old_owner.commit(&batch_of_one_reading(&scope, 1.5)).await;
    assert_eq!(fenced_partitions(late), vec![PARTITION]);
    let stored: Vec<f64> = redis_read::range(&mut conn, &raw_key)
        .await
        .into_values()
        .collect();
    assert_eq!(
        stored,
        vec![2.5],
        "the fenced host overwrote the owner's value"
    );
    let head: Option<Vec<u8>> = redis::cmd("HGET")
        .arg(&checkpoint_key)
        .arg(iot_host::engine::checkpoint_format::HEAD_FIELD)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        head.map(|h| iot_host::engine::checkpoint_format::decode_next_offset(&h).unwrap()),
        Some(1),
        "the owner's checkpoint stands"
    );

    // The partition comes back to the first host: it resumes from the owner's checkpoint,
    // writes the site, and from then on fences the other host in turn.
    let resumed = old_owner.load_checkpoint(PARTITION).await.unwrap();
    assert_eq!(resumed.map(|c| c.next_offset), Some(1));
    let mut engine = engine_at_the_start(&scope);
    let first = first_batch_of(&mut engine, 2.5);
    old_owner.keep_series(&first.new_series);
    old_owner
        .commit(&next_batch_of(&mut engine, 4.5))
        .await
        .expect("the new owner's batch is written");
    let stale = new_owner.commit(&batch_of_one_reading(&scope, 3.5)).await;
    assert_eq!(fenced_partitions(stale), vec![PARTITION]);
    let stored: Vec<f64> = redis_read::range(&mut conn, &raw_key)
        .await
        .into_values()
        .collect();
    assert_eq!(
        stored,
        vec![2.5, 4.5],
        "the fenced host overwrote the owner's values"
    );
}

/// A fenced host's batch on a site the new owner has not written yet may land (the new
/// owner's replay rewrites it), but its checkpoint never does, and the series it creates
/// are created with duplicate policy LAST.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_redis_cluster_a_fenced_batch_writes_no_checkpoint() {
    let scope = TestScope::on("cluster_fenced_batch_no_checkpoint", Sink::RedisCluster);
    let checkpoint_key = scope.checkpoint_key(TOPIC, PARTITION);
    let raw_key =
        SeriesName::new("s1", "TH1", Kind::Raw).key_in(&scope.key_prefix(), scope.key_layout());
    let mut conn = scope.redis_conn().await;
    let mut old_owner = cluster_store(&scope).await;
    let mut new_owner = cluster_store(&scope).await;
    assert!(old_owner
        .load_checkpoint(PARTITION)
        .await
        .unwrap()
        .is_none());
    assert!(new_owner
        .load_checkpoint(PARTITION)
        .await
        .unwrap()
        .is_none());

    let late = old_owner.commit(&batch_of_one_reading(&scope, 1.5)).await;
    assert_eq!(fenced_partitions(late), vec![PARTITION]);
    let checkpoint_exists: bool = redis::cmd("EXISTS")
        .arg(&checkpoint_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!checkpoint_exists, "the fenced batch wrote its checkpoint");

    new_owner
        .commit(&batch_of_one_reading(&scope, 1.5))
        .await
        .expect("the owner's replay of the same record is written");
    assert_eq!(
        redis_read::duplicate_policy(&mut conn, &raw_key).await,
        "last"
    );
    let stored: Vec<f64> = redis_read::range(&mut conn, &raw_key)
        .await
        .into_values()
        .collect();
    assert_eq!(stored, vec![1.5]);
}
