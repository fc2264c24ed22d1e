//! Reading stored series back from RedisTimeSeries, the way a dashboard would: by labels.

use std::collections::BTreeMap;

use crate::oracle::SeriesValues;

/// Every series under `prefix` as (site, sensor, kind) → values, read with TS.MRANGE by
/// label after finding the keys. Only keys under the test's prefix are read.
pub async fn all_series(
    conn: &mut iot_host::store::RedisReader,
    prefix: &str,
) -> BTreeMap<(String, String, String), SeriesValues> {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(conn)
        .await
        .expect("KEYS");
    let mut out = BTreeMap::new();
    for key in keys {
        if key.starts_with(&format!("{prefix}_")) {
            continue; // checkpoints and probes
        }
        let labels = series_labels(conn, &key).await;
        let values = range(conn, &key).await;
        out.insert(
            (
                labels["site"].clone(),
                labels["sensor"].clone(),
                labels["kind"].clone(),
            ),
            values,
        );
    }
    out
}

/// The labels of one series.
pub async fn series_labels(
    conn: &mut iot_host::store::RedisReader,
    key: &str,
) -> BTreeMap<String, String> {
    let info: redis::Value = redis::cmd("TS.INFO")
        .arg(key)
        .query_async(conn)
        .await
        .expect("TS.INFO");
    let fields = as_array(&info);
    let mut labels = BTreeMap::new();
    for pair in fields.chunks(2) {
        if text(&pair[0]) == "labels" {
            for label in as_array(&pair[1]) {
                let kv = as_array(label);
                labels.insert(text(&kv[0]), text(&kv[1]));
            }
        }
    }
    labels
}

/// The duplicate policy of one series (lower case).
pub async fn duplicate_policy(conn: &mut iot_host::store::RedisReader, key: &str) -> String {
    let info: redis::Value = redis::cmd("TS.INFO")
        .arg(key)
        .query_async(conn)
        .await
        .expect("TS.INFO");
    let fields = as_array(&info);
    for pair in fields.chunks(2) {
        if text(&pair[0]) == "duplicatePolicy" {
            return text(&pair[1]).to_lowercase();
        }
    }
    String::new()
}

/// All samples of one series.
pub async fn range(conn: &mut iot_host::store::RedisReader, key: &str) -> SeriesValues {
    let rows: Vec<(i64, String)> = redis::cmd("TS.RANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .query_async(conn)
        .await
        .expect("TS.RANGE");
    rows.into_iter()
        .map(|(ts, v)| (ts, v.parse::<f64>().expect("a number")))
        .collect()
}

fn as_array(v: &redis::Value) -> &[redis::Value] {
    match v {
        redis::Value::Array(items) => items,
        other => panic!("expected an array, got {other:?}"),
    }
}

fn text(v: &redis::Value) -> String {
    match v {
        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        redis::Value::SimpleString(s) => s.clone(),
        redis::Value::Int(i) => i.to_string(),
        redis::Value::Nil => String::new(),
        other => format!("{other:?}"),
    }
}
