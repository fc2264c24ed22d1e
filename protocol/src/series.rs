//! RedisTimeSeries naming (SPEC §5): every series is `<prefix><site>:<sensor>:<kind>` with
//! labels `site`, `sensor`, `kind` and `unit`.

use std::fmt;

/// The kinds of stored series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Raw,
    AggDay,
    AggDayDiff,
    AggDayRest,
    LateAccepted,
    LateRej,
    /// Alarms an alarm rule raised: one sample per alarm, at the instant it held.
    Alarm,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Raw,
        Kind::AggDay,
        Kind::AggDayDiff,
        Kind::AggDayRest,
        Kind::LateAccepted,
        Kind::LateRej,
        Kind::Alarm,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Raw => "raw",
            Kind::AggDay => "AggDay",
            Kind::AggDayDiff => "AggDayDiff",
            Kind::AggDayRest => "AggDayRest",
            Kind::LateAccepted => "LateAccepted",
            Kind::LateRej => "LateRej",
            Kind::Alarm => "Alarm",
        }
    }

    pub fn parse(text: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identity of one stored series. `sensor` is a string because aggregate outputs are named
/// by the pipeline, not by the sensor catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesName {
    pub site: String,
    pub sensor: String,
    pub kind: Kind,
}

impl SeriesName {
    pub fn new(site: impl Into<String>, sensor: impl Into<String>, kind: Kind) -> Self {
        SeriesName {
            site: site.into(),
            sensor: sensor.into(),
            kind,
        }
    }

    /// The Redis key: `<prefix><site>:<sensor>:<kind>`, e.g. `iot:s1:TH1:raw`.
    pub fn key(&self, prefix: &str) -> String {
        format!("{prefix}{}:{}:{}", self.site, self.sensor, self.kind)
    }
}

/// The default key prefix.
pub const DEFAULT_KEY_PREFIX: &str = "iot:";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_keys_read_site_sensor_kind() {
        let name = SeriesName::new("s1", "TH1", Kind::AggDay);
        assert_eq!(name.key(DEFAULT_KEY_PREFIX), "iot:s1:TH1:AggDay");
    }

    #[test]
    fn kinds_parse_from_their_label_values() {
        for kind in Kind::ALL {
            assert_eq!(Kind::parse(kind.as_str()), Some(kind));
        }
    }
}
