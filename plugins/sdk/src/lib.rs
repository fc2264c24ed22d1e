//! `iot-plugin`: an aggregation plugin for the iot-stream host in one short file.
//!
//! ```ignore
//! use iot_plugin::{Aggregation, Result, Sample, State, Window};
//!
//! /// The total and the number of samples so far (state version 1: 16 bytes).
//! #[derive(Default, State)]
//! pub struct Totals(f64, u64);
//!
//! pub struct Sum;
//!
//! impl Aggregation for Sum {
//!     const NAME: &'static str = "sum";
//!     const STATE_VERSION: u32 = 1;
//!     type Params = ();
//!     type State = Totals;
//!
//!     fn fold(Totals(total, count): &mut Totals, _: Window, samples: &[Sample]) -> Result<()> {
//!         samples.iter().for_each(|sample| *total += sample.value);
//!         *count += samples.len() as u64;
//!         Ok(())
//!     }
//!
//!     fn finish(&Totals(total, count): &Totals, _: Window) -> Result<Option<f64>> {
//!         Ok((count > 0).then_some(total))
//!     }
//! }
//!
//! iot_plugin::export!(Sum);
//! ```
//!
//! Layout:
//! - [`Aggregation`] (`aggregation.rs`): the trait a plugin implements, typed end to end;
//! - [`State`] (`state.rs`): accumulators as plain structs with `#[derive(State)]`, encoded
//!   field by field in a fixed little-endian layout the host stores and hands back;
//! - [`Params`] (`params.rs`): the output's parameters parsed into a struct with
//!   `#[derive(Params)]`, defaults and clear errors included;
//! - [`export!`] (`export.rs`): turns the trait into the WIT interface `iot:aggregation/fold`
//!   (the bindings are generated here, once, so a plugin never calls the generator);
//! - [`Error`] (`error.rs`): what a plugin returns; the host shows it prefixed with the
//!   plugin's name;
//! - [`AlarmRule`] (`rule.rs`): a rule that raises alarms as readings arrive instead of a
//!   value per window; [`export_rule!`] exports it;
//! - `harness` (`harness.rs`, native builds only): [`component_test!`] runs the built
//!   component through the host's harness from the plugin's own `cargo test`.
//!
//! A plugin is an ordinary std crate (`crate-type = ["cdylib"]`), built with
//! `cargo build --target wasm32-wasip2`; its logic can be unit-tested natively by calling
//! the trait's functions. A panic's message reaches the host through stderr.

mod aggregation;
mod error;
#[doc(hidden)]
pub mod export;
#[cfg(not(target_arch = "wasm32"))]
pub mod harness;
mod params;
pub mod rule;
mod state;

/// The WIT bindings, generated from `wit/` once for every plugin.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "aggregation",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "__export_aggregation",
        default_bindings_module: "iot_plugin::bindings",
    });
}

/// The WIT bindings of alarm rules (world `rule`).
#[doc(hidden)]
pub mod rule_bindings {
    wit_bindgen::generate!({
        world: "rule",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "__export_alarm_rule",
        default_bindings_module: "iot_plugin::rule_bindings",
    });
}

pub use aggregation::Aggregation;
pub use bindings::exports::iot::aggregation::fold::{Sample, Window};
pub use error::{Error, Result};
pub use iot_plugin_derive::{Params, State};
pub use params::{FromParam, Params, TimeOfDay, UtcOffset};
pub use rule::{AlarmRule, Alarms};
pub use state::{Field, Reader, State};

/// Milliseconds in a day (UTC days have no leap seconds in the host's time model).
pub const DAY_MS: i64 = 86_400_000;

/// What the derive macros expand to; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::params::{field, only};
}
