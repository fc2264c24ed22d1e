//! RedisTimeSeries naming (SPEC §5): every series is `<prefix><site>:<sensor>:<kind>` with
//! labels `site`, `sensor`, `kind` and `unit`. On a Redis Cluster the site is a hash tag,
//! `<prefix>{<site>}:<sensor>:<kind>` ([`KeyLayout::Cluster`]), so that a site's series
//! share one slot: its writes can be one transaction and `FILTER site=…` one shard's answer.

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

    /// The Redis key on a single Redis: `<prefix><site>:<sensor>:<kind>`, e.g. `iot:s1:TH1:raw`.
    pub fn key(&self, prefix: &str) -> String {
        self.key_in(prefix, KeyLayout::Single)
    }

    /// The Redis key in a layout: on a cluster `<prefix>{<site>}:<sensor>:<kind>`.
    pub fn key_in(&self, prefix: &str, layout: KeyLayout) -> String {
        match layout {
            KeyLayout::Single => format!("{prefix}{}:{}:{}", self.site, self.sensor, self.kind),
            KeyLayout::Cluster => {
                format!("{prefix}{{{}}}:{}:{}", self.site, self.sensor, self.kind)
            }
        }
    }
}

/// How keys are laid out: for one Redis, or for a Redis Cluster (hash tags that keep what
/// is written together in one slot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyLayout {
    #[default]
    Single,
    Cluster,
}

impl KeyLayout {
    /// Where a partition's checkpoint (a hash) is; on a cluster its owner key shares the slot.
    pub fn checkpoint_key(self, prefix: &str, topic: &str, partition: i32) -> String {
        match self {
            KeyLayout::Single => format!("{prefix}_checkpoint:{topic}:{partition}"),
            KeyLayout::Cluster => format!("{prefix}_checkpoint:{{{topic}:{partition}}}"),
        }
    }

    /// Where a partition's owner epoch is (the fencing of checkpoint writes).
    pub fn owner_key(self, prefix: &str, topic: &str, partition: i32) -> String {
        match self {
            KeyLayout::Single => format!("{prefix}_owner:{topic}:{partition}"),
            KeyLayout::Cluster => format!("{prefix}_owner:{{{topic}:{partition}}}"),
        }
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
    fn cluster_keys_tag_the_site_so_a_site_shares_one_slot() {
        let name = SeriesName::new("s1", "TH1", Kind::AggDay);
        assert_eq!(
            name.key_in("iot:", KeyLayout::Cluster),
            "iot:{s1}:TH1:AggDay"
        );
        assert_eq!(
            KeyLayout::Cluster.checkpoint_key("iot:", "readings", 3),
            "iot:_checkpoint:{readings:3}"
        );
        assert_eq!(
            KeyLayout::Cluster.owner_key("iot:", "readings", 3),
            "iot:_owner:{readings:3}"
        );
    }

    #[test]
    fn kinds_parse_from_their_label_values() {
        for kind in Kind::ALL {
            assert_eq!(Kind::parse(kind.as_str()), Some(kind));
        }
    }
}
