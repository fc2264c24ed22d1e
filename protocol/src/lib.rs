//! The shared vocabulary of the system (SPEC §1, §2, §4, §5): which sensors exist, what a
//! reading is, how a reading travels as a Kafka record, and how its series are named in
//! RedisTimeSeries. The simulator writes with it and the host reads with it; neither knows
//! any aggregation.

pub mod command;
pub mod record;
pub mod sensor;
pub mod series;
pub mod time;

pub use record::{parse_record, DeadLetterReason, ParseError, Reading, RecordJson};
pub use sensor::{Sensor, SensorKind};
pub use series::{Kind, SeriesName};
