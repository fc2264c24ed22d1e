//! Host bindings generated from `wit/aggregation.wit`. The generated records are used as
//! they are on the hot path (no conversion per sample).

wasmtime::component::bindgen!({
    world: "aggregation",
    path: "../wit",
});

pub use exports::iot::aggregation::fold::{PluginInfo, Sample, Window};
