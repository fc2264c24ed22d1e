//! One input record → the reading record the host reads (JSON, keyed by site), or a
//! dead-letter record saying why not. Pure: the Kafka loop calls it per record.

use iot_protocol::record::{parse_record, Reading};
use iot_protocol::time::format_ts;
use serde_json::json;

/// An input topic and how to read it: `NAME[:option=value,...]` on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputTopic {
    pub name: String,
    pub site: SiteFrom,
}

/// Where a record's site comes from when the record does not name one (the line format;
/// a JSON record always names its own site).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiteFrom {
    /// This site, for every line of the topic (`site=NAME`; default: `--default-site`).
    Fixed(String),
    /// The record's key (`site=key`); a record without a key is dead-lettered.
    Key,
}

impl InputTopic {
    /// Parses `NAME`, `NAME:site=s1` or `NAME:site=key`.
    pub fn parse(text: &str, default_site: &str) -> Result<InputTopic, String> {
        let (name, options) = match text.split_once(':') {
            Some((name, options)) => (name, options),
            None => (text, ""),
        };
        if name.is_empty() {
            return Err(format!("--from {text:?}: the topic name is empty"));
        }
        let mut site = SiteFrom::Fixed(default_site.to_owned());
        for option in options.split(',').filter(|o| !o.is_empty()) {
            match option.split_once('=') {
                Some(("site", "key")) => site = SiteFrom::Key,
                Some(("site", value)) if !value.is_empty() => {
                    site = SiteFrom::Fixed(value.to_owned())
                }
                _ => {
                    return Err(format!(
                        "--from {text:?}: unknown option {option:?}; the options are \
                         site=NAME (the site of line-format records) and site=key (the \
                         record's key is its site)"
                    ))
                }
            }
        }
        Ok(InputTopic {
            name: name.to_owned(),
            site,
        })
    }
}

/// Where a record came from, for dead-letter records and the output's `origin`.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

/// What becomes of one input record.
#[derive(Debug, Clone, PartialEq)]
pub enum Transformed {
    /// A reading for the readings topic, keyed by its site; `ts_ms` is its own time.
    Reading {
        site: String,
        ts_ms: i64,
        value: String,
    },
    /// A record that cannot be used, for the dead-letter topic.
    DeadLetter { key: Option<String>, value: String },
}

/// Reads one record of `input`.
pub fn transform(
    input: &InputTopic,
    key: Option<&[u8]>,
    payload: &[u8],
    origin: Origin<'_>,
    max_record_bytes: usize,
) -> Transformed {
    let key_text = key.map(|k| String::from_utf8_lossy(k).into_owned());
    let site = match (&input.site, &key_text) {
        (SiteFrom::Fixed(site), _) => site.as_str(),
        (SiteFrom::Key, Some(k)) if !k.is_empty() => k.as_str(),
        // A JSON record names its own site; a line needs the key it does not have.
        (SiteFrom::Key, _) => "",
    };
    match parse_record(payload, site, max_record_bytes) {
        Ok(reading) if !reading.site.is_empty() => Transformed::Reading {
            site: reading.site.to_string(),
            ts_ms: reading.ts_ms,
            value: reading_record(&reading, origin),
        },
        Ok(_) => dead_letter(
            key_text,
            payload,
            origin,
            "missing_field",
            "a line-format record of a topic read with site=key has no key: key it by \
             its site, or give the topic's site (`--from TOPIC:site=NAME`)",
        ),
        Err(error) => dead_letter(
            key_text,
            payload,
            origin,
            error.reason.as_str(),
            &error.detail,
        ),
    }
}

/// The reading in the JSON record format, with where it came from.
fn reading_record(reading: &Reading<'_>, origin: Origin<'_>) -> String {
    json!({
        "site": reading.site,
        "sensor": reading.sensor.name(),
        "ts": format_ts(reading.ts_ms),
        "value": reading.value,
        "origin": format!("{}:{}:{}", origin.topic, origin.partition, origin.offset),
    })
    .to_string()
}

fn dead_letter(
    key: Option<String>,
    payload: &[u8],
    origin: Origin<'_>,
    reason: &str,
    detail: &str,
) -> Transformed {
    const MAX_PAYLOAD_ECHO: usize = 2048;
    let echo = &payload[..payload.len().min(MAX_PAYLOAD_ECHO)];
    Transformed::DeadLetter {
        key,
        value: json!({
            "reason": reason,
            "detail": detail,
            "payload": String::from_utf8_lossy(echo),
            "payload_bytes": payload.len(),
            "topic": origin.topic,
            "partition": origin.partition,
            "offset": origin.offset,
            "stage": "repartition",
        })
        .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1024;
    const ORIGIN: Origin<'static> = Origin {
        topic: "course",
        partition: 3,
        offset: 17,
    };

    fn value_of(t: &Transformed) -> serde_json::Value {
        match t {
            Transformed::Reading { value, .. } | Transformed::DeadLetter { value, .. } => {
                serde_json::from_str(value).unwrap()
            }
        }
    }

    #[test]
    fn a_line_takes_the_topics_site_and_becomes_a_json_reading() {
        let input = InputTopic::parse("course:site=b7", "default").unwrap();
        let out = transform(&input, None, b"W1 2020-01-01 00:15:00 0.5", ORIGIN, MAX);
        let Transformed::Reading { site, .. } = &out else {
            panic!("{out:?}")
        };
        assert_eq!(site, "b7");
        let v = value_of(&out);
        assert_eq!(v["sensor"], "W1");
        assert_eq!(v["ts"], "2020-01-01T00:15:00Z");
        assert_eq!(v["value"], 0.5);
        assert_eq!(v["origin"], "course:3:17");
    }

    #[test]
    fn a_json_record_keeps_its_own_site() {
        let input = InputTopic::parse("mixed:site=key", "default").unwrap();
        let json = br#"{"site":"s9","sensor":"TH1","ts":"2020-01-01T00:15:00Z","value":20.25}"#;
        let out = transform(&input, Some(b"s1"), json, ORIGIN, MAX);
        assert!(matches!(&out, Transformed::Reading { site, .. } if site == "s9"));
        assert_eq!(value_of(&out)["value"], 20.25);
    }

    #[test]
    fn a_line_of_a_keyed_topic_takes_its_key_as_site() {
        let input = InputTopic::parse("lines:site=key", "default").unwrap();
        let out = transform(
            &input,
            Some(b"s4"),
            b"TH1 2020-01-01 00:15:00 21",
            ORIGIN,
            MAX,
        );
        assert!(matches!(&out, Transformed::Reading { site, .. } if site == "s4"));
        let unkeyed = transform(&input, None, b"TH1 2020-01-01 00:15:00 21", ORIGIN, MAX);
        assert_eq!(value_of(&unkeyed)["reason"], "missing_field");
    }

    #[test]
    fn a_bad_record_is_dead_lettered_with_the_topic_it_came_from() {
        let input = InputTopic::parse("course", "default").unwrap();
        let out = transform(
            &input,
            Some(b"k"),
            b"XYZ 2020-01-01 00:15:00 1",
            ORIGIN,
            MAX,
        );
        let v = value_of(&out);
        assert!(matches!(out, Transformed::DeadLetter { .. }));
        assert_eq!(v["reason"], "unknown_sensor");
        assert_eq!(v["topic"], "course");
        assert_eq!(v["offset"], 17);
    }

    #[test]
    fn unknown_topic_options_are_refused_with_the_ones_that_exist() {
        let error = InputTopic::parse("course:format=line", "default").unwrap_err();
        assert!(error.contains("site=NAME"), "{error}");
        assert_eq!(
            InputTopic::parse("course", "s1").unwrap().site,
            SiteFrom::Fixed("s1".into())
        );
    }
}
