//! The host's tests without services: the engine driven with hand-made records and real
//! plugin builds, and the plugins themselves through the host's WebAssembly runtime.
//!
//! One test binary for all of them: every binary links wasmtime and rdkafka, so each one
//! more costs a link and about 70 MB of `target/`. Run one group with
//! `cargo test -p iot-host --test host engine_swap::`.

mod common;

mod engine_checkpoints;
mod engine_partitions;
mod engine_stamps;
mod engine_swap;
mod plugins;
