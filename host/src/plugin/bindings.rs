//! Host bindings generated from `wit/aggregation.wit`. The generated records are the public
//! [`Sample`], [`Window`] and [`PluginInfo`], used as they are on the hot path (no
//! conversion per sample).

wasmtime::component::bindgen!({
    world: "aggregation",
    path: "../wit",
    additional_derives: [PartialEq],
});

pub use exports::iot::aggregation::fold::{PluginInfo, Sample, Window};
