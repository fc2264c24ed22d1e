//! The ten sensors of the reference site (SPEC §1).

use std::fmt;
use std::str::FromStr;

/// How a sensor reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SensorKind {
    /// One reading per 15-minute interval, stamped at the interval's end.
    Interval15m,
    /// A cumulative meter read once a day at 00:00.
    DailyMeter,
    /// An event with value 1 at a random instant.
    Event,
}

/// One of the ten sensors of a site. The discriminant is a dense index (0..10) so
/// per-sensor tables can be plain arrays on the hot path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Sensor {
    TH1,
    TH2,
    HVAC1,
    HVAC2,
    MiAC1,
    MiAC2,
    W1,
    Etot,
    Wtot,
    Mov1,
}

impl Sensor {
    pub const ALL: [Sensor; 10] = [
        Sensor::TH1,
        Sensor::TH2,
        Sensor::HVAC1,
        Sensor::HVAC2,
        Sensor::MiAC1,
        Sensor::MiAC2,
        Sensor::W1,
        Sensor::Etot,
        Sensor::Wtot,
        Sensor::Mov1,
    ];
    pub const COUNT: usize = 10;

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            Sensor::TH1 => "TH1",
            Sensor::TH2 => "TH2",
            Sensor::HVAC1 => "HVAC1",
            Sensor::HVAC2 => "HVAC2",
            Sensor::MiAC1 => "MiAC1",
            Sensor::MiAC2 => "MiAC2",
            Sensor::W1 => "W1",
            Sensor::Etot => "Etot",
            Sensor::Wtot => "Wtot",
            Sensor::Mov1 => "Mov1",
        }
    }

    pub fn kind(self) -> SensorKind {
        match self {
            Sensor::Etot | Sensor::Wtot => SensorKind::DailyMeter,
            Sensor::Mov1 => SensorKind::Event,
            _ => SensorKind::Interval15m,
        }
    }

    /// The `unit` label of the sensor's series (ASCII, so label filters are easy to type).
    pub fn unit(self) -> &'static str {
        match self {
            Sensor::TH1 | Sensor::TH2 => "degC",
            Sensor::HVAC1 | Sensor::HVAC2 | Sensor::MiAC1 | Sensor::MiAC2 | Sensor::Etot => "Wh",
            Sensor::W1 | Sensor::Wtot => "L",
            Sensor::Mov1 => "count",
        }
    }
}

impl fmt::Display for Sensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown sensor {0:?}: expected one of TH1, TH2, HVAC1, HVAC2, MiAC1, MiAC2, W1, Etot, Wtot, Mov1")]
pub struct UnknownSensor(pub String);

impl FromStr for Sensor {
    type Err = UnknownSensor;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Sensor::ALL
            .into_iter()
            .find(|sensor| sensor.name() == s)
            .ok_or_else(|| UnknownSensor(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sensor_parses_back_from_its_name() {
        for sensor in Sensor::ALL {
            assert_eq!(sensor.name().parse::<Sensor>(), Ok(sensor));
            assert_eq!(Sensor::ALL[sensor.index()], sensor);
        }
    }

    #[test]
    fn sensor_names_are_case_sensitive() {
        assert!("th1".parse::<Sensor>().is_err());
    }
}
