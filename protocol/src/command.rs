//! Device commands (two-way control): what the live page may ask a site's devices to do,
//! how a command travels on the `commands` topic (key: the site id), and how a device
//! acknowledges it on the `command-acks` topic.
//!
//! Two kinds of command, each for the sensors that measure the device it controls:
//!
//! | device (sensor) | action | effect in the simulator |
//! |---|---|---|
//! | `HVAC1`, `HVAC2`, `MiAC1`, `MiAC2` | `off`, `on` | the appliance's 15-minute energy readings are 0 while it is off |
//! | `TH1`, `TH2` | `setpoint` with `value` in [16, 28] °C | the room's temperature readings stay within 0.5 °C of the setpoint |
//!
//! A command the host refuses (unknown device, action or value) is never sent.

use std::str::FromStr;

use serde_json::json;

use crate::sensor::Sensor;

/// Lowest and highest temperature setpoint a command may ask for, in °C.
pub const SETPOINT_RANGE_C: (f64, f64) = (16.0, 28.0);
/// Longest command id (ids are `[A-Za-z0-9_-]`).
pub const MAX_ID_CHARS: usize = 64;

/// What a command asks the device to do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action {
    On,
    Off,
    /// Hold the room at this temperature, °C.
    Setpoint(f64),
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::On => "on",
            Action::Off => "off",
            Action::Setpoint(_) => "setpoint",
        }
    }

    pub fn value(self) -> Option<f64> {
        match self {
            Action::Setpoint(v) => Some(v),
            _ => None,
        }
    }
}

/// One command to one device of one site.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// Chosen by the sender; the acknowledgement carries it back.
    pub id: String,
    pub site: String,
    pub device: Sensor,
    pub action: Action,
}

/// Why a command was refused; the message says what is allowed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommandError {
    #[error("the command is not a JSON object with id, site, device and action: {0}")]
    NotJson(String),
    #[error("field {0:?} is missing or not a string")]
    Missing(&'static str),
    #[error("id {0:?} must be 1 to 64 letters, digits, '-' or '_'")]
    BadId(String),
    #[error("site {0:?} must be letters, digits, '-', '_' or '.'")]
    BadSite(String),
    #[error("device {0:?} cannot be controlled: use HVAC1, HVAC2, MiAC1, MiAC2 (on, off) or TH1, TH2 (setpoint)")]
    UnknownDevice(String),
    #[error("{device} takes {allowed}, not {action:?}")]
    WrongAction {
        device: &'static str,
        action: String,
        allowed: &'static str,
    },
    #[error("a setpoint needs a number \"value\" from 16 to 28 (°C), not {0}")]
    BadSetpoint(String),
}

impl Command {
    /// Parses and validates a command as the page sends it (JSON).
    pub fn parse(json: &[u8]) -> Result<Command, CommandError> {
        let value: serde_json::Value =
            serde_json::from_slice(json).map_err(|e| CommandError::NotJson(e.to_string()))?;
        let field = |name: &'static str| {
            value
                .get(name)
                .and_then(|v| v.as_str())
                .ok_or(CommandError::Missing(name))
        };
        let id = field("id")?;
        if id.is_empty()
            || id.chars().count() > MAX_ID_CHARS
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(CommandError::BadId(id.to_owned()));
        }
        let site = field("site")?;
        if site.is_empty()
            || !site
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(CommandError::BadSite(site.to_owned()));
        }
        let device_name = field("device")?;
        let device = Sensor::from_str(device_name)
            .map_err(|_| CommandError::UnknownDevice(device_name.to_owned()))?;
        let action_name = field("action")?;
        let action = match (switchable(device), thermostat(device), action_name) {
            (true, _, "on") => Action::On,
            (true, _, "off") => Action::Off,
            (_, true, "setpoint") => {
                let v = value.get("value");
                let setpoint = v.and_then(|v| v.as_f64()).filter(|v| {
                    v.is_finite() && (SETPOINT_RANGE_C.0..=SETPOINT_RANGE_C.1).contains(v)
                });
                Action::Setpoint(setpoint.ok_or_else(|| {
                    CommandError::BadSetpoint(v.map_or("nothing".to_owned(), |v| v.to_string()))
                })?)
            }
            (false, false, _) => return Err(CommandError::UnknownDevice(device_name.to_owned())),
            (true, _, other) => {
                return Err(CommandError::WrongAction {
                    device: device.name(),
                    action: other.to_owned(),
                    allowed: "on or off",
                })
            }
            (_, true, other) => {
                return Err(CommandError::WrongAction {
                    device: device.name(),
                    action: other.to_owned(),
                    allowed: "setpoint",
                })
            }
        };
        Ok(Command {
            id: id.to_owned(),
            site: site.to_owned(),
            device,
            action,
        })
    }

    fn fields(&self) -> serde_json::Value {
        json!({
            "id": self.id,
            "site": self.site,
            "device": self.device.name(),
            "action": self.action.name(),
            "value": self.action.value(),
        })
    }

    /// The record on the `commands` topic (its key is the site id).
    pub fn to_json(&self) -> String {
        self.fields().to_string()
    }

    /// The acknowledgement a device sends once it applied the command at `ts_ms` (its own
    /// clock), on the `command-acks` topic (key: the site id): the command's fields,
    /// `"status": "applied"` and `"ts_ms"`.
    pub fn ack_json(&self, ts_ms: i64) -> String {
        let mut ack = self.fields();
        ack["status"] = json!("applied");
        ack["ts_ms"] = json!(ts_ms);
        ack.to_string()
    }
}

/// Appliances that can be switched on and off.
pub fn switchable(device: Sensor) -> bool {
    matches!(
        device,
        Sensor::HVAC1 | Sensor::HVAC2 | Sensor::MiAC1 | Sensor::MiAC2
    )
}

/// Rooms whose temperature follows a setpoint.
pub fn thermostat(device: Sensor) -> bool {
    matches!(device, Sensor::TH1 | Sensor::TH2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Command, CommandError> {
        Command::parse(text.as_bytes())
    }

    #[test]
    fn a_switch_and_a_setpoint_parse_and_travel_as_json() {
        let off = parse(r#"{"id":"c1","site":"s1","device":"HVAC1","action":"off"}"#).unwrap();
        assert_eq!((off.device, off.action), (Sensor::HVAC1, Action::Off));
        let set =
            parse(r#"{"id":"c2","site":"s1","device":"TH2","action":"setpoint","value":21.5}"#)
                .unwrap();
        assert_eq!(set.action, Action::Setpoint(21.5));
        assert_eq!(Command::parse(set.to_json().as_bytes()).unwrap(), set);
    }

    #[test]
    fn unknown_devices_actions_and_values_are_refused_with_what_is_allowed() {
        let refused = |text: &str| parse(text).unwrap_err().to_string();
        assert!(
            refused(r#"{"id":"c","site":"s1","device":"HVAC9","action":"off"}"#)
                .contains("use HVAC1")
        );
        assert!(
            refused(r#"{"id":"c","site":"s1","device":"W1","action":"off"}"#)
                .contains("cannot be controlled")
        );
        assert!(refused(
            r#"{"id":"c","site":"s1","device":"HVAC1","action":"setpoint","value":20}"#
        )
        .contains("on or off"));
        assert!(
            refused(r#"{"id":"c","site":"s1","device":"TH1","action":"setpoint","value":40}"#)
                .contains("16 to 28")
        );
        assert!(
            refused(r#"{"id":"c","site":"s1","device":"TH1","action":"setpoint"}"#)
                .contains("16 to 28")
        );
        assert!(
            refused(r#"{"id":"c c","site":"s1","device":"TH1","action":"on"}"#)
                .contains("letters, digits")
        );
        assert!(
            refused(r#"{"id":"c","site":"s 1","device":"TH1","action":"on"}"#).contains("site")
        );
        assert!(refused("not json").contains("JSON"));
    }
}
