//! `iot-host tap`: live-tails what the system writes to Kafka (aggregates, late-rejected,
//! dead-letter and plugin-errors records, or any topics named), for one site or one series
//! if asked, one record a line, like `vector tap`.
//!
//! Guarantees: it only reads. It joins no consumer group that matters (a group of its own,
//! never committed), so it moves nobody's offsets and can run beside the hosts. It reads
//! committed records only (`read_committed`), as the hosts' consumers do.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;

use crate::config::TapArgs;
use crate::source::{is_end_of_partition, report_client_error};

/// How long one poll waits before checking whether to stop.
const POLL: Duration = Duration::from_millis(200);
/// How long `--exit-at-end` waits for the first partitions before it says none came.
const ASSIGNMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// What a record must match to be shown.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// The record's `site` (JSON field), or a key that is the site, starts with `<site>:`
    /// or holds `:<site>:` (a series key).
    pub site: Option<String>,
    /// A piece of the record's key (e.g. `:TH1:AggDay`).
    pub series: Option<String>,
}

impl Filter {
    pub fn matches(&self, key: &str, value: &serde_json::Value) -> bool {
        let site_ok = self.site.as_deref().is_none_or(|site| {
            value.get("site").and_then(|s| s.as_str()) == Some(site)
                || key == site
                || key.starts_with(&format!("{site}:"))
                || key.contains(&format!(":{site}:"))
        });
        let series_ok = self.series.as_deref().is_none_or(|part| key.contains(part));
        site_ok && series_ok
    }
}

/// The tap's client context: the end of a partition is how `--exit-at-end` knows it is
/// done, not an error to log (librdkafka's default context logs it as one).
struct TapContext;

impl ClientContext for TapContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if !is_end_of_partition(&error) {
            report_client_error(&error, reason);
        }
    }
}

impl ConsumerContext for TapContext {}

/// One record as a line: `topic partition:offset key value`.
pub fn format_line(topic: &str, partition: i32, offset: i64, key: &str, value: &str) -> String {
    format!("{topic} {partition}:{offset} {key} {value}")
}

/// Tails until `stop` is set (the caller sets it on Ctrl-C), or (`--exit-at-end`) until
/// every assigned partition is read to its end, or `--max` records were shown. Blocking:
/// run it off the async runtime. Returns how many records were shown.
pub fn run(args: &TapArgs, stop: &AtomicBool) -> anyhow::Result<u64> {
    let topics: Vec<&str> = args.topics.iter().map(String::as_str).collect();
    let group = format!(
        "iot-tap-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    );
    let consumer: BaseConsumer<TapContext> = ClientConfig::new()
        .set("bootstrap.servers", &args.kafka)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set(
            "auto.offset.reset",
            if args.from_start {
                "earliest"
            } else {
                "latest"
            },
        )
        .set("enable.partition.eof", "true")
        .create_with_context(TapContext)
        .with_context(|| format!("cannot create a Kafka consumer for {}", args.kafka))?;
    consumer
        .subscribe(&topics)
        .with_context(|| format!("cannot subscribe to {topics:?}"))?;
    let filter = Filter {
        site: args.site.clone(),
        series: args.series.clone(),
    };
    let started = Instant::now();
    let mut at_end: HashSet<(String, i32)> = HashSet::new();
    let mut shown = 0u64;
    while !stop.load(Ordering::Relaxed) {
        if args.max.is_some_and(|max| shown >= max) {
            break;
        }
        match consumer.poll(POLL) {
            Some(Ok(message)) => {
                at_end.remove(&(message.topic().to_owned(), message.partition()));
                let key = message
                    .key()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .unwrap_or_default();
                let text = String::from_utf8_lossy(message.payload().unwrap_or_default());
                let value: serde_json::Value =
                    serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
                if filter.matches(&key, &value) {
                    println!(
                        "{}",
                        format_line(
                            message.topic(),
                            message.partition(),
                            message.offset(),
                            &key,
                            text.trim()
                        )
                    );
                    shown += 1;
                }
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                // The notice names no topic: count the partition number for every topic.
                for topic in &topics {
                    at_end.insert(((*topic).to_owned(), partition));
                }
            }
            Some(Err(e)) => report_client_error(&e, "tap"),
            None => {}
        }
        if args.exit_at_end {
            let assigned = consumer.assignment().context("reading the assignment")?;
            let parts: Vec<(String, i32)> = assigned
                .elements()
                .iter()
                .map(|e| (e.topic().to_owned(), e.partition()))
                .collect();
            if parts.is_empty() {
                if started.elapsed() > ASSIGNMENT_TIMEOUT {
                    anyhow::bail!(
                        "no partition of {topics:?} was assigned within {ASSIGNMENT_TIMEOUT:?}: do the topics exist?"
                    );
                }
            } else if parts.iter().all(|p| at_end.contains(p)) {
                break;
            }
        }
    }
    Ok(shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_site_filter_matches_the_records_site_or_its_key() {
        let filter = Filter {
            site: Some("s1".into()),
            series: None,
        };
        let record = serde_json::json!({"site": "s1", "value": 1.0});
        assert!(filter.matches("iot:s1:TH1:AggDay@1577923200000", &record));
        assert!(filter.matches("s1", &serde_json::Value::Null));
        assert!(!filter.matches("iot:s10:TH1:AggDay", &serde_json::json!({"site": "s10"})));
        let series = Filter {
            site: None,
            series: Some(":TH1:AggDay".into()),
        };
        assert!(series.matches("iot:s1:TH1:AggDay@1", &serde_json::Value::Null));
        assert!(!series.matches("iot:s1:TH2:AggDay@1", &serde_json::Value::Null));
    }
}
