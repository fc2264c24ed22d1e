//! What a run sent: counts per kind of reading and per sensor.

use std::fmt;

use iot_protocol::Sensor;

use crate::generator::{ReadingKind, SimReading};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    by_kind: [u64; ReadingKind::COUNT],
    by_sensor: [u64; Sensor::COUNT],
}

impl Summary {
    pub fn add(&mut self, r: &SimReading) {
        self.by_kind[r.kind.index()] += 1;
        self.by_sensor[r.sensor.index()] += 1;
    }

    pub fn kind(&self, kind: ReadingKind) -> u64 {
        self.by_kind[kind.index()]
    }

    pub fn sensor(&self, sensor: Sensor) -> u64 {
        self.by_sensor[sensor.index()]
    }

    pub fn total(&self) -> u64 {
        self.by_kind.iter().sum()
    }
}

impl fmt::Display for Summary {
    /// A small table: per kind, the total, then per sensor.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self.total().to_string().len().max(5);
        writeln!(f, "by kind:")?;
        for kind in ReadingKind::ALL {
            writeln!(f, "  {:<12} {:>width$}", kind.label(), self.kind(kind))?;
        }
        writeln!(f, "  {:<12} {:>width$}", "total", self.total())?;
        writeln!(f, "by sensor:")?;
        for sensor in Sensor::ALL {
            writeln!(f, "  {:<12} {:>width$}", sensor.name(), self.sensor(sensor))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generator::{Generator, SimConfig};

    #[test]
    fn one_day_of_one_site_counts_every_reading_once() {
        let config = SimConfig {
            days: Some(1),
            ..SimConfig::default()
        };
        let mut summary = Summary::default();
        for step in Generator::new(config).unwrap() {
            step.readings.iter().for_each(|r| summary.add(r));
        }
        assert_eq!(summary.kind(ReadingKind::Interval), 7 * 96);
        assert_eq!(summary.sensor(Sensor::TH1), 96);
        assert_eq!(summary.kind(ReadingKind::Meter), 4);
        assert_eq!(summary.kind(ReadingKind::LateShort), 4); // steps 20, 40, 60, 80
        assert_eq!(summary.kind(ReadingKind::LateLong), 0);
        assert_eq!(summary.sensor(Sensor::W1), 96 + 4);
        let motion = summary.kind(ReadingKind::Motion);
        assert!((5..=12).contains(&motion));
        assert_eq!(summary.total(), 7 * 96 + 4 + 4 + motion);
        let text = summary.to_string();
        assert!(text.contains("late 2-day"), "{text}");
        assert!(
            text.contains(&format!("total        {:>5}", summary.total())),
            "{text}"
        );
    }
}
