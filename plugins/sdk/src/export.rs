//! The bridge from [`Aggregation`] to the WIT interface `iot:aggregation/fold`:
//! [`Adapter`] implements the generated bindings for any aggregation, and [`export!`]
//! exports it from the plugin's component.
//!
//! [`export!`]: crate::export

use std::marker::PhantomData;

use crate::bindings::exports::iot::aggregation::fold::{Guest, PluginInfo};
use crate::{Aggregation, Error, Params, Sample, State, Window};

/// The WIT interface, implemented for the aggregation `A`.
pub struct Adapter<A>(PhantomData<A>);

/// Exports an [`Aggregation`] as the plugin's component interface. Once per plugin crate:
/// `iot_plugin::export!(Sum);`.
#[macro_export]
macro_rules! export {
    ($plugin:ty) => {
        #[doc(hidden)]
        type __IotPluginExport = $crate::export::Adapter<$plugin>;
        $crate::bindings::__export_aggregation!(__IotPluginExport with_types_in $crate::bindings);
    };
}

impl<A: Aggregation> Adapter<A> {
    /// The error as the host shows it: `"<name>: <message>"`.
    fn named(error: Error) -> String {
        format!("{}: {}", A::NAME, error.message())
    }

    fn decode(bytes: &[u8]) -> Result<A::State, String> {
        A::State::decode(bytes).map_err(Self::named)
    }
}

impl<A: Aggregation> Guest for Adapter<A> {
    fn info() -> PluginInfo {
        PluginInfo {
            name: A::NAME.into(),
            state_version: A::STATE_VERSION,
            includes_window_start: A::INCLUDES_WINDOW_START,
            min_inputs: A::MIN_INPUTS,
            max_inputs: A::MAX_INPUTS,
        }
    }

    fn init(params: Vec<(String, String)>, inputs: u32, window: Window) -> Result<Vec<u8>, String> {
        if !(A::MIN_INPUTS..=A::MAX_INPUTS).contains(&inputs) {
            return Err(Self::named(Error::new(format!(
                "takes {} to {} inputs, the output declares {inputs}",
                A::MIN_INPUTS,
                A::MAX_INPUTS
            ))));
        }
        let params = A::Params::parse(&params).map_err(Self::named)?;
        let state = A::init(params, inputs, window).map_err(Self::named)?;
        let mut bytes = Vec::new();
        state.encode(&mut bytes);
        Ok(bytes)
    }

    fn fold(mut bytes: Vec<u8>, window: Window, samples: Vec<Sample>) -> Result<Vec<u8>, String> {
        let mut state = Self::decode(&bytes)?;
        A::fold(&mut state, window, &samples).map_err(Self::named)?;
        // The host's buffer is reused: no allocation unless the accumulator grew.
        bytes.clear();
        state.encode(&mut bytes);
        Ok(bytes)
    }

    fn finish(bytes: Vec<u8>, window: Window) -> Result<Option<f64>, String> {
        let state = Self::decode(&bytes)?;
        A::finish(&state, window).map_err(Self::named)
    }
}
