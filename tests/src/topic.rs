//! Reading a topic back from its beginning to its current end: what was really sent.

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::TopicPartitionList;

/// One record as it sits in the topic.
#[derive(Debug, Clone)]
pub struct TopicRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub value: Vec<u8>,
}

impl TopicRecord {
    pub fn value_str(&self) -> &str {
        std::str::from_utf8(&self.value).expect("record value is UTF-8")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.value).expect("record value is JSON")
    }
}

/// Every record of `topic` from offset 0 to each partition's high watermark at the time of
/// the call, partition by partition in offset order.
pub fn read_all(bootstrap: &str, topic: &str) -> Vec<TopicRecord> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("reader-{topic}"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        // Transaction markers take offsets too: stop at the end, not at high − 1.
        .set("enable.partition.eof", "true")
        .create()
        .expect("Kafka consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("topic metadata");
    let partitions: Vec<i32> = metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| p.id())
        .collect();
    let mut records = Vec::new();
    for partition in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, Duration::from_secs(10))
            .expect("partition watermarks");
        if high <= low {
            continue;
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, rdkafka::Offset::Offset(low))
            .unwrap();
        consumer.assign(&tpl).expect("assign partition");
        let mut next = low;
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while next < high {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out reading {topic}/{partition}"
            );
            match consumer.poll(Duration::from_millis(500)) {
                Some(Ok(m)) => {
                    next = m.offset() + 1;
                    records.push(TopicRecord {
                        partition,
                        offset: m.offset(),
                        key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                        value: m.payload().unwrap_or_default().to_vec(),
                    });
                }
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
                Some(Err(e)) => panic!("reading {topic}/{partition}: {e}"),
                None => {}
            }
        }
    }
    records
}
