//! One instantiated plugin and its calls.

use std::sync::Arc;

use wasmtime::{Store, StoreLimits, StoreLimitsBuilder};

use super::bindings::{Aggregation, PluginInfo, Sample, Window};
use super::error::PluginError;
use super::loader::Inner;

pub(super) struct StoreState {
    limits: StoreLimits,
}

/// A live instance. Not shared between threads; every call is bounded by the plugin's
/// limits. After a failed call the instance is replaced by a fresh one before the next
/// call, so one bad window never poisons the next.
pub struct PluginInstance {
    plugin: Arc<Inner>,
    store: Store<StoreState>,
    bindings: Aggregation,
    poisoned: bool,
}

impl PluginInstance {
    pub(super) fn new(plugin: Arc<Inner>) -> Result<PluginInstance, PluginError> {
        let (store, bindings) = instantiate(&plugin)?;
        Ok(PluginInstance {
            plugin,
            store,
            bindings,
            poisoned: false,
        })
    }

    pub fn name(&self) -> &str {
        &self.plugin.name
    }

    pub(super) fn info(&mut self) -> Result<PluginInfo, PluginError> {
        self.call(|bindings, store| bindings.iot_aggregation_fold().call_info(store).map(Ok))
    }

    /// A new accumulator for `window`.
    pub fn init(
        &mut self,
        params: &[(String, String)],
        inputs: u32,
        window: Window,
    ) -> Result<Vec<u8>, PluginError> {
        self.call(|bindings, store| {
            bindings
                .iot_aggregation_fold()
                .call_init(store, params, inputs, window)
        })
    }

    /// Folds `samples` into `state`.
    pub fn fold(
        &mut self,
        state: &mut Vec<u8>,
        window: Window,
        samples: &[Sample],
    ) -> Result<(), PluginError> {
        *state = self.call(|bindings, store| {
            bindings
                .iot_aggregation_fold()
                .call_fold(store, state, window, samples)
        })?;
        Ok(())
    }

    /// The window's value.
    pub fn finish(&mut self, state: &[u8], window: Window) -> Result<Option<f64>, PluginError> {
        let value = self.call(|bindings, store| {
            bindings
                .iot_aggregation_fold()
                .call_finish(store, state, window)
        })?;
        match value {
            Some(v) if !v.is_finite() => Err(PluginError::NonFinite {
                plugin: self.plugin.name.clone(),
                value: v,
            }),
            other => Ok(other),
        }
    }

    /// Runs one export call under the fuel bound, mapping every failure to a PluginError.
    fn call<T>(
        &mut self,
        f: impl FnOnce(&Aggregation, &mut Store<StoreState>) -> wasmtime::Result<Result<T, String>>,
    ) -> Result<T, PluginError> {
        if self.poisoned {
            let (store, bindings) = instantiate(&self.plugin)?;
            self.store = store;
            self.bindings = bindings;
            self.poisoned = false;
        }
        let fuel = self.plugin.limits.fuel_per_call;
        self.store
            .set_fuel(fuel)
            .expect("fuel is enabled on the engine");
        match f(&self.bindings, &mut self.store) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(message)) => Err(PluginError::Returned {
                plugin: self.plugin.name.clone(),
                message,
            }),
            Err(error) => {
                self.poisoned = true;
                Err(classify(&self.plugin.name, fuel, error))
            }
        }
    }
}

fn instantiate(plugin: &Inner) -> Result<(Store<StoreState>, Aggregation), PluginError> {
    let limits = StoreLimitsBuilder::new()
        .memory_size(plugin.limits.max_memory_bytes)
        .instances(16)
        .build();
    let mut store = Store::new(&plugin.engine, StoreState { limits });
    store.limiter(|state| &mut state.limits);
    store
        .set_fuel(plugin.limits.fuel_per_call)
        .expect("fuel is enabled on the engine");
    let bindings = plugin
        .pre
        .instantiate(&mut store)
        .map_err(|e| classify(&plugin.name, plugin.limits.fuel_per_call, e))?;
    Ok((store, bindings))
}

fn classify(plugin: &str, fuel: u64, error: wasmtime::Error) -> PluginError {
    if let Some(trap) = error.downcast_ref::<wasmtime::Trap>() {
        if *trap == wasmtime::Trap::OutOfFuel {
            return PluginError::OutOfFuel {
                plugin: plugin.to_owned(),
                fuel,
            };
        }
    }
    PluginError::Trap {
        plugin: plugin.to_owned(),
        detail: format!("{error:#}"),
    }
}
