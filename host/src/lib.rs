//! The aggregation host (SPEC §2–6).
//!
//! - [`pipeline`]: the pipeline file, which outputs exist and how they are computed.
//! - [`plugin`]: loading and calling WASM aggregation plugins in a sandbox.
//! - [`tenant`]: tenants (groups of sites with their own plugins, pipeline and limits).
//! - [`engine`]: per-site event-time day windows, lateness, emission, swaps; no I/O.
//! - [`reload`]: watching plugin folders and pipeline files, building what changed off the
//!   hot path.
//! - [`source`], [`store`], [`publish`]: Kafka in, RedisTimeSeries (one Redis or a Redis
//!   Cluster) and Kafka out.
//! - [`repartition`]: the repartition stage (`iot-host repartition`), other producers'
//!   partition layouts → readings keyed by site, exactly once.
//! - [`outage`]: Kafka and Redis outages, logged once when they start and once when they end.
//! - [`metrics`]: the Prometheus metrics, every one defined there, served at `/metrics`.
//! - [`live`]: the live page, pushing points over a WebSocket as they are stored.
//! - [`runner`]: the batch loop wiring them together, a fold side and a durable side
//!   running concurrently; [`profile`]: where its time goes, per stage.
//! - [`config`]: the host's flags and file; `config::commands`, the subcommands' arguments.
//! - [`tap`]: `iot-host tap`, live-tailing the output topics.
//! - [`validate`], [`plugin_test`], [`plugin_new`]: the plugin author's tools (`iot-host validate`,
//!   `iot-host plugin test`, `iot-host plugin new`).

pub mod config;
pub mod engine;
pub mod live;
pub mod metrics;
pub mod outage;
pub mod pipeline;
pub mod plugin;
pub mod plugin_new;
pub mod plugin_test;
pub mod profile;
pub mod publish;
pub mod reload;
pub mod repartition;
pub mod runner;
pub mod source;
pub mod store;
pub mod tap;
pub mod tenant;
pub mod validate;
