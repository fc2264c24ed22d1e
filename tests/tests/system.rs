//! The end-to-end tests that share Kafka and Redis with each other, in one test binary.
//!
//! Every test binary links wasmtime and rdkafka, so each one more costs a link and about
//! 70 MB of `target/` (twenty of them filled a CI machine's disk). The tests that stop,
//! pause or restart a service (`crash_recovery`, `outages`, `scale_out`) stay binaries of
//! their own: cargo runs test binaries one after another, so nothing else is running while
//! they disturb the services. Run one group with
//! `cargo test -p system-tests --test system late_data::`.

mod alarms;
mod bad_input;
mod checkpoint_store;
mod course_producer;
mod dashboard_queries;
mod device_commands;
mod fencing;
mod hostile_plugins;
mod hot_swap;
mod late_data;
mod live_page;
mod metrics_endpoint;
mod pipeline_matches_oracle;
mod plugin_faults;
mod plugin_new_command;
mod plugin_test_command;
mod redis_cluster_script;
mod simulator_output;
mod tap_command;
mod tenants;
mod validate_command;
