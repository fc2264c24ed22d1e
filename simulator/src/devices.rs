//! Devices under remote control (two-way control): what the commands a site received have
//! set, applied to each step's readings, and the listener that takes commands from the
//! `commands` topic and acknowledges them on `command-acks`.
//!
//! The generator's random streams are left untouched: a command changes readings after
//! they are drawn, so the rest of a run is the same as without it.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context as _;
use iot_protocol::command::{Action, Command};
use iot_protocol::sensor::Sensor;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::generator::{ReadingKind, SimReading};

/// The topics of two-way control.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandTopics {
    /// Commands to the simulated devices (key: site id).
    pub commands: String,
    /// Acknowledgements of the commands applied (key: site id).
    pub acks: String,
}

impl Default for CommandTopics {
    fn default() -> Self {
        CommandTopics {
            commands: "commands".into(),
            acks: "command-acks".into(),
        }
    }
}

/// The state commands set, by (site index, device).
#[derive(Debug, Default, Clone)]
pub struct Devices {
    set: HashMap<(u32, Sensor), Action>,
}

/// A temperature reading's distance from its setpoint: the drawn value's distance from the
/// middle of its range (12 to 35 °C), scaled to at most this.
const SETPOINT_SPREAD_C: f64 = 0.5;
const TEMPERATURE_MIDDLE_C: f64 = 23.5;
const TEMPERATURE_HALF_RANGE_C: f64 = 11.5;

impl Devices {
    /// Records what `command` asks of the device of site `site`.
    pub fn apply(&mut self, site: u32, command: &Command) {
        match command.action {
            Action::On => self.set.remove(&(site, command.device)),
            action => self.set.insert((site, command.device), action),
        };
    }

    /// Changes the step's drawn readings as the devices' state says: an appliance that is
    /// off uses no energy; a room with a setpoint stays near it.
    pub fn adjust(&self, readings: &mut [SimReading]) {
        if self.set.is_empty() {
            return;
        }
        for r in readings
            .iter_mut()
            .filter(|r| r.kind == ReadingKind::Interval)
        {
            match self.set.get(&(r.site, r.sensor)) {
                Some(Action::Off) => r.value = 0.0,
                Some(&Action::Setpoint(setpoint)) => {
                    let offset = (r.value - TEMPERATURE_MIDDLE_C) / TEMPERATURE_HALF_RANGE_C;
                    r.value = ((setpoint + offset * SETPOINT_SPREAD_C) * 100.0).round() / 100.0;
                }
                _ => {}
            }
        }
    }
}

/// Takes commands from the `commands` topic, from its end at the time the listener starts
/// (a command sent while no simulator ran is not applied later).
pub struct CommandListener {
    consumer: BaseConsumer,
}

impl CommandListener {
    pub fn connect(bootstrap: &str, topic: &str) -> anyhow::Result<CommandListener> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", "iot-simulator-commands")
            .set("enable.auto.commit", "false")
            .create()
            .context("cannot create the Kafka consumer of commands")?;
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .with_context(|| format!("cannot read the metadata of topic {topic:?}"))?;
        let partitions = metadata
            .topics()
            .first()
            .map(|t| t.partitions().len())
            .unwrap_or(0);
        if partitions == 0 {
            anyhow::bail!(
                "topic {topic:?} does not exist: create it (scripts/stack up does), or run \
                 without commands (--no-commands)"
            );
        }
        let mut assignment = TopicPartitionList::new();
        for p in 0..partitions as i32 {
            assignment.add_partition_offset(topic, p, Offset::End)?;
        }
        consumer.assign(&assignment)?;
        Ok(CommandListener { consumer })
    }

    /// The commands that arrived since the last call (waits at most `wait` for the first).
    /// A record that is not a valid command is skipped with a warning: the host validates
    /// what it sends, so it came from somewhere else.
    pub fn take(&self, wait: Duration, out: &mut Vec<Command>) {
        let mut wait = wait;
        while let Some(message) = self.consumer.poll(wait) {
            wait = Duration::ZERO;
            match message {
                Ok(m) => match Command::parse(m.payload().unwrap_or_default()) {
                    Ok(command) => out.push(command),
                    Err(e) => tracing::warn!("skipped a record of the commands topic: {e}"),
                },
                Err(e) => tracing::warn!("reading commands: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(site: u32, sensor: Sensor, value: f64) -> SimReading {
        SimReading {
            site,
            kind: ReadingKind::Interval,
            sensor,
            ts_ms: 900_000,
            value,
        }
    }

    fn command(site: &str, device: Sensor, action: Action) -> Command {
        Command {
            id: "c1".into(),
            site: site.into(),
            device,
            action,
        }
    }

    #[test]
    fn an_appliance_switched_off_reads_zero_until_switched_on_again() {
        let mut devices = Devices::default();
        devices.apply(0, &command("s1", Sensor::HVAC1, Action::Off));
        let mut step = vec![
            reading(0, Sensor::HVAC1, 73.2),
            reading(0, Sensor::HVAC2, 40.0),
            reading(1, Sensor::HVAC1, 12.0),
        ];
        devices.adjust(&mut step);
        let values: Vec<f64> = step.iter().map(|r| r.value).collect();
        assert_eq!(values, [0.0, 40.0, 12.0], "only site 0's HVAC1");
        devices.apply(0, &command("s1", Sensor::HVAC1, Action::On));
        let mut step = vec![reading(0, Sensor::HVAC1, 73.2)];
        devices.adjust(&mut step);
        assert_eq!(step[0].value, 73.2);
    }

    #[test]
    fn a_room_with_a_setpoint_stays_within_half_a_degree_of_it() {
        let mut devices = Devices::default();
        devices.apply(0, &command("s1", Sensor::TH1, Action::Setpoint(21.0)));
        for drawn in [12.0, 17.3, 23.5, 30.1, 35.0] {
            let mut step = vec![reading(0, Sensor::TH1, drawn)];
            devices.adjust(&mut step);
            assert!(
                (step[0].value - 21.0).abs() <= 0.5,
                "{drawn} became {}",
                step[0].value
            );
        }
    }
}
