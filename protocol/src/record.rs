//! Kafka record formats of a reading (SPEC §4) and the reasons a record is unusable (SPEC §8).
//!
//! Two formats are accepted on `readings`:
//! - JSON: `{"site":"s1","sensor":"TH1","ts":"2020-01-01T00:15:00Z","value":12.4}`
//! - the plain line: `TH1 2020-01-01 00:15:00 12.4` (the site is the host's default site).
//!
//! Parsing borrows from the payload where it can: the hot path allocates nothing per record.

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime};
use serde::{Deserialize, Serialize};

use crate::sensor::Sensor;
use crate::time::format_ts;

/// Records larger than this are dead-lettered as `oversized` unless the host is told otherwise.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1024;

/// A usable reading. `ts_ms` is UTC milliseconds since the epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading<'a> {
    pub site: Cow<'a, str>,
    pub sensor: Sensor,
    pub ts_ms: i64,
    pub value: f64,
}

impl Reading<'_> {
    pub fn into_owned(self) -> Reading<'static> {
        Reading {
            site: Cow::Owned(self.site.into_owned()),
            sensor: self.sensor,
            ts_ms: self.ts_ms,
            value: self.value,
        }
    }

    /// The JSON record value of this reading, as the simulator publishes it.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&RecordJson {
            site: self.site.clone(),
            sensor: Cow::Borrowed(self.sensor.name()),
            ts: Cow::Owned(format_ts(self.ts_ms)),
            value: self.value,
        })
        .expect("a reading always serialises")
    }
}

/// The JSON shape of a reading record.
#[derive(Debug, Serialize, Deserialize)]
pub struct RecordJson<'a> {
    #[serde(borrow)]
    pub site: Cow<'a, str>,
    #[serde(borrow)]
    pub sensor: Cow<'a, str>,
    #[serde(borrow)]
    pub ts: Cow<'a, str>,
    pub value: f64,
}

/// Why a record went to `dead-letter`. The string forms are stable: tests and dashboards
/// match on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterReason {
    /// Neither JSON nor the line format.
    NotParseable,
    /// JSON without one of `site`, `sensor`, `ts`, `value` (or with a wrong type).
    MissingField,
    UnknownSensor,
    /// NaN or ±infinity, or a number too large for a double.
    NonFiniteValue,
    BadTimestamp,
    Oversized,
}

impl DeadLetterReason {
    pub const ALL: [DeadLetterReason; 6] = [
        DeadLetterReason::NotParseable,
        DeadLetterReason::MissingField,
        DeadLetterReason::UnknownSensor,
        DeadLetterReason::NonFiniteValue,
        DeadLetterReason::BadTimestamp,
        DeadLetterReason::Oversized,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterReason::NotParseable => "not_parseable",
            DeadLetterReason::MissingField => "missing_field",
            DeadLetterReason::UnknownSensor => "unknown_sensor",
            DeadLetterReason::NonFiniteValue => "non_finite_value",
            DeadLetterReason::BadTimestamp => "bad_timestamp",
            DeadLetterReason::Oversized => "oversized",
        }
    }
}

impl fmt::Display for DeadLetterReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A record that cannot be used: its reason and a sentence for the person reading the
/// dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct ParseError {
    pub reason: DeadLetterReason,
    pub detail: String,
}

impl ParseError {
    fn new(reason: DeadLetterReason, detail: impl Into<String>) -> Self {
        ParseError {
            reason,
            detail: detail.into(),
        }
    }
}

/// Parses one record value. JSON is tried when the payload starts with `{`, the line
/// format otherwise.
pub fn parse_record<'a>(
    payload: &'a [u8],
    default_site: &'a str,
    max_bytes: usize,
) -> Result<Reading<'a>, ParseError> {
    if payload.len() > max_bytes {
        return Err(ParseError::new(
            DeadLetterReason::Oversized,
            format!(
                "record is {} bytes, the limit is {max_bytes}",
                payload.len()
            ),
        ));
    }
    let trimmed = payload.trim_ascii();
    if trimmed.starts_with(b"{") {
        // serde_json checks the UTF-8 of the strings it reads, so the payload is not
        // validated twice (a whole-record check was 4 % of the host's time in a drain).
        parse_json(trimmed)
    } else {
        parse_line(utf8(payload)?.trim(), default_site)
    }
}

fn utf8(bytes: &[u8]) -> Result<&str, ParseError> {
    std::str::from_utf8(bytes).map_err(|e| {
        ParseError::new(
            DeadLetterReason::NotParseable,
            format!("not UTF-8 text: {e}"),
        )
    })
}

fn parse_json(text: &[u8]) -> Result<Reading<'_>, ParseError> {
    let record: RecordJson<'_> = serde_json::from_slice(text)
        .map_err(|e| utf8(text).err().unwrap_or_else(|| json_error(e)))?;
    let sensor = parse_sensor(&record.sensor)?;
    let ts_ms = parse_timestamp(&record.ts)?;
    let value = check_finite(record.value)?;
    if record.site.is_empty() {
        return Err(ParseError::new(
            DeadLetterReason::MissingField,
            "field `site` is empty",
        ));
    }
    Ok(Reading {
        site: record.site,
        sensor,
        ts_ms,
        value,
    })
}

/// Why serde_json refused a record, as a dead-letter reason.
fn json_error(e: serde_json::Error) -> ParseError {
    // serde_json refuses numbers beyond f64 (1e999) with "number out of range".
    let reason = if e.to_string().contains("number out of range") {
        DeadLetterReason::NonFiniteValue
    } else if e.is_data() {
        DeadLetterReason::MissingField
    } else {
        DeadLetterReason::NotParseable
    };
    ParseError::new(reason, format!("JSON record rejected: {e}"))
}

/// `SENSOR YYYY-MM-DD HH:MM:SS VALUE` (also accepts `SENSOR <RFC 3339> VALUE`).
fn parse_line<'a>(text: &'a str, default_site: &'a str) -> Result<Reading<'a>, ParseError> {
    let fields: Vec<&str> = text.split_ascii_whitespace().collect();
    let (sensor, ts, value) = match fields.as_slice() {
        [sensor, date, time, value] => (*sensor, TimestampText::DateAndTime(date, time), *value),
        [sensor, ts, value] => (*sensor, TimestampText::Single(ts), *value),
        _ => {
            return Err(ParseError::new(
                DeadLetterReason::NotParseable,
                format!(
                    "neither JSON nor the line format `SENSOR YYYY-MM-DD HH:MM:SS VALUE`: {:?}",
                    truncate(text, 80)
                ),
            ))
        }
    };
    let sensor = parse_sensor(sensor)?;
    let ts_ms = match ts {
        TimestampText::DateAndTime(date, time) => parse_date_and_time(date, time)?,
        TimestampText::Single(ts) => parse_timestamp(ts)?,
    };
    let value: f64 = value.parse().map_err(|_| {
        ParseError::new(
            DeadLetterReason::NotParseable,
            format!("value {value:?} is not a number"),
        )
    })?;
    let value = check_finite(value)?;
    Ok(Reading {
        site: Cow::Borrowed(default_site),
        sensor,
        ts_ms,
        value,
    })
}

enum TimestampText<'a> {
    DateAndTime(&'a str, &'a str),
    Single(&'a str),
}

fn parse_sensor(name: &str) -> Result<Sensor, ParseError> {
    name.parse().map_err(|e: crate::sensor::UnknownSensor| {
        ParseError::new(DeadLetterReason::UnknownSensor, e.to_string())
    })
}

fn check_finite(value: f64) -> Result<f64, ParseError> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(ParseError::new(
            DeadLetterReason::NonFiniteValue,
            format!("value {value} is not finite"),
        ))
    }
}

/// RFC 3339 with an offset, or a naive `YYYY-MM-DDTHH:MM:SS[.fff]` / `YYYY-MM-DD HH:MM:SS`
/// taken as UTC (SPEC §2).
pub fn parse_timestamp(text: &str) -> Result<i64, ParseError> {
    if let Some(ms) = parse_canonical_utc(text) {
        return Ok(ms);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_millis());
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(t.and_utc().timestamp_millis());
        }
    }
    Err(bad_timestamp(text))
}

/// `YYYY-MM-DDTHH:MM:SSZ`, the form the simulator and most producers send, read without
/// the general parser (which was 2 % of the host's time in a drain). Anything else (an
/// offset, fractions, a leap second, lower case) is `None` and goes to the general parser.
fn parse_canonical_utc(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let separators = [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'Z'),
    ];
    if b.len() != 20 || separators.iter().any(|&(at, c)| b[at] != c) {
        return None;
    }
    let number = |from: usize, to: usize| -> Option<u32> {
        b[from..to].iter().try_fold(0u32, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    let year = i32::try_from(number(0, 4)?).ok()?;
    let date = NaiveDate::from_ymd_opt(year, number(5, 7)?, number(8, 10)?)?;
    let time = NaiveTime::from_hms_opt(number(11, 13)?, number(14, 16)?, number(17, 19)?)?;
    Some(date.and_time(time).and_utc().timestamp_millis())
}

fn parse_date_and_time(date: &str, time: &str) -> Result<i64, ParseError> {
    let date = NaiveDate::parse_from_str(date, "%Y-%m-%d").map_err(|_| bad_timestamp(date))?;
    let time = NaiveTime::parse_from_str(time, "%H:%M:%S%.f").map_err(|_| bad_timestamp(time))?;
    Ok(date.and_time(time).and_utc().timestamp_millis())
}

fn bad_timestamp(text: &str) -> ParseError {
    ParseError::new(
        DeadLetterReason::BadTimestamp,
        format!(
            "timestamp {:?} is not RFC 3339 nor `YYYY-MM-DD HH:MM:SS` (UTC)",
            truncate(text, 60)
        ),
    )
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SITE: &str = "default";
    const MAX: usize = DEFAULT_MAX_RECORD_BYTES;
    const JAN_1_0015: i64 = 1_577_837_700_000; // 2020-01-01T00:15:00Z

    fn reason_of(payload: &str) -> DeadLetterReason {
        parse_record(payload.as_bytes(), SITE, MAX)
            .unwrap_err()
            .reason
    }

    #[test]
    fn the_canonical_utc_form_reads_as_the_general_rfc3339_parser_reads_it() {
        let general = |text: &str| {
            DateTime::parse_from_rfc3339(text)
                .map(|t| t.timestamp_millis())
                .ok()
        };
        for text in [
            "2020-01-01T00:15:00Z",
            "2024-02-29T23:59:59Z",
            "1970-01-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
            "2023-02-29T00:00:00Z", // no such day: both refuse it
            "2020-13-01T00:00:00Z",
            "2020-01-01T24:00:00Z",
            "2020-01-01T00:60:00Z",
            "2020-01-01T00:00:60Z", // a leap second: left to the general parser
            "2020-01-01t00:15:00z",
            "2020-01-01T00:15:00+01:00",
            "2020-01-01T00:15:00.5Z",
            "2020-0a-01T00:15:00Z",
        ] {
            assert_eq!(
                parse_timestamp(text).ok(),
                general(text),
                "{text} read differently from chrono's RFC 3339 parser"
            );
        }
        assert_eq!(
            parse_canonical_utc("2020-01-01T00:15:00Z"),
            Some(JAN_1_0015)
        );
    }

    #[test]
    fn records_that_are_not_utf8_are_not_parseable_and_say_so() {
        let in_a_string =
            b"{\"site\":\"s\xff1\",\"sensor\":\"TH1\",\"ts\":\"2020-01-01T00:15:00Z\",\"value\":1}";
        let line = b"TH1 2020-01-01 00:15:00 1\xff";
        for payload in [&in_a_string[..], &line[..]] {
            let error = parse_record(payload, SITE, MAX).unwrap_err();
            assert_eq!(error.reason, DeadLetterReason::NotParseable);
            assert!(error.detail.contains("not UTF-8"), "{}", error.detail);
        }
    }

    #[test]
    fn json_record_parses_with_its_site() {
        let r = parse_record(
            br#"{"site":"s1","sensor":"TH1","ts":"2020-01-01T00:15:00Z","value":12.4}"#,
            SITE,
            MAX,
        )
        .unwrap();
        assert_eq!(
            r,
            Reading {
                site: "s1".into(),
                sensor: Sensor::TH1,
                ts_ms: JAN_1_0015,
                value: 12.4
            }
        );
    }

    #[test]
    fn line_record_takes_the_default_site_and_utc() {
        let r = parse_record(b"TH1 2020-01-01 00:15:00 12.4", SITE, MAX).unwrap();
        assert_eq!(
            r,
            Reading {
                site: SITE.into(),
                sensor: Sensor::TH1,
                ts_ms: JAN_1_0015,
                value: 12.4
            }
        );
    }

    #[test]
    fn timestamp_without_offset_is_utc_and_offsets_are_honoured() {
        assert_eq!(parse_timestamp("2020-01-01T00:15:00").unwrap(), JAN_1_0015);
        assert_eq!(
            parse_timestamp("2020-01-01T01:15:00+01:00").unwrap(),
            JAN_1_0015
        );
    }

    #[test]
    fn json_round_trips_through_to_json() {
        let r = Reading {
            site: "s9".into(),
            sensor: Sensor::Mov1,
            ts_ms: JAN_1_0015 + 1234,
            value: 1.0,
        };
        let json = r.to_json();
        assert_eq!(parse_record(json.as_bytes(), SITE, MAX).unwrap(), r);
    }

    #[test]
    fn every_bad_record_gets_its_reason() {
        assert_eq!(reason_of("hello world"), DeadLetterReason::NotParseable);
        assert_eq!(reason_of("{not json"), DeadLetterReason::NotParseable);
        assert_eq!(
            reason_of(r#"{"site":"s1","sensor":"TH1","value":1}"#),
            DeadLetterReason::MissingField
        );
        assert_eq!(
            reason_of(r#"{"site":"s1","sensor":"XX9","ts":"2020-01-01T00:15:00Z","value":1}"#),
            DeadLetterReason::UnknownSensor
        );
        assert_eq!(
            reason_of("TH1 2020-01-01 00:15:00 NaN"),
            DeadLetterReason::NonFiniteValue
        );
        assert_eq!(
            reason_of("TH1 2020-01-01 00:15:00 inf"),
            DeadLetterReason::NonFiniteValue
        );
        assert_eq!(
            reason_of(r#"{"site":"s1","sensor":"TH1","ts":"2020-01-01T00:15:00Z","value":1e999}"#),
            DeadLetterReason::NonFiniteValue
        );
        assert_eq!(
            reason_of(r#"{"site":"s1","sensor":"TH1","ts":"yesterday","value":1}"#),
            DeadLetterReason::BadTimestamp
        );
        assert_eq!(
            reason_of("TH1 2020-13-01 00:15:00 1"),
            DeadLetterReason::BadTimestamp
        );
        assert_eq!(reason_of(&"x".repeat(MAX + 1)), DeadLetterReason::Oversized);
    }
}
