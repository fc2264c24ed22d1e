//! The device layer (SPEC §1–2, §4): simulated buildings whose ten sensors publish readings
//! to Kafka.
//!
//! - [`fleet`]: the sensors as the simulator plays them: ranges, meter growth, motion.
//! - [`clock`]: 15-minute steps, midnights, the late-reading schedule, `--start`, pacing.
//! - [`generator`]: the deterministic stepper ([`SimConfig`] → [`Step`]s of readings).
//! - [`layout`]: where each reading goes (keyed by site, or the course project's layout).
//! - [`publisher`]: sending a run to Kafka, fast or in real time.
//! - [`summary`]: what a run sent, per kind and per sensor.
//! - [`devices`]: device commands obeyed (an appliance off, a room's setpoint) and
//!   acknowledged, in real-time runs.

pub mod clock;
pub mod devices;
pub mod fleet;
pub mod generator;
pub mod layout;
pub mod publisher;
pub mod summary;

pub use generator::{Generator, ReadingKind, SimConfig, SimReading, Step};
pub use layout::Layout;
pub use publisher::{publish, Format, Pace, PublishConfig, PublishReport};
pub use summary::Summary;
