//! The aggregation host (SPEC §2–6).
//!
//! - [`pipeline`]: the pipeline file, which outputs exist and how they are computed.
//! - [`plugin`]: loading and calling WASM aggregation plugins in a sandbox.
//! - [`engine`]: per-site event-time day windows, lateness, emission; no I/O.
//! - [`source`], [`store`], [`publish`]: Kafka in, RedisTimeSeries and Kafka out.
//! - [`live`]: the live page, pushing points over a WebSocket as they are stored.
//! - [`runner`]: the batch loop wiring them together; [`config`]: flags and file.

pub mod config;
pub mod engine;
pub mod live;
pub mod pipeline;
pub mod plugin;
pub mod publish;
pub mod runner;
pub mod source;
pub mod store;
