//! The trait a plugin implements.

use crate::{Params, Result, Sample, State, Window};

/// A windowed fold: what the host runs for every window (a day) of an output.
///
/// The host keeps each open window's accumulator as bytes ([`State`] encodes it) and may
/// hand them to another instance or a newer build with the same [`STATE_VERSION`]; every
/// function must therefore depend only on its arguments. Folding the samples in one call
/// or split over several calls must give the same accumulator (`iot-host plugin test`
/// checks this).
///
/// [`STATE_VERSION`]: Aggregation::STATE_VERSION
pub trait Aggregation: 'static {
    /// A short name for logs and errors (`"sum"`); errors are shown as `"sum: …"`.
    const NAME: &'static str;
    /// The version of the accumulator's layout: bump it whenever the fields of
    /// [`State`](Aggregation::State) or their meaning change.
    const STATE_VERSION: u32;
    /// Also receive the reading stamped exactly at the window's start (a daily difference
    /// of a cumulative meter needs it); that reading is then folded into two windows.
    const INCLUDES_WINDOW_START: bool = false;
    /// How many inputs an output using this plugin may declare. The SDK refuses other
    /// counts before [`init`](Aggregation::init) is called.
    const MIN_INPUTS: u32 = 1;
    const MAX_INPUTS: u32 = 1;

    /// The output's parameters (`()` for none).
    type Params: Params;
    /// The accumulator of one window.
    type State: State + Default;

    /// A new, empty accumulator for `window`. By default, `State::default()`.
    fn init(params: Self::Params, inputs: u32, window: Window) -> Result<Self::State> {
        let _ = (params, inputs, window);
        Ok(Self::State::default())
    }

    /// Folds `samples`, in order, into `state`.
    fn fold(state: &mut Self::State, window: Window, samples: &[Sample]) -> Result<()>;

    /// The window's value so far; `None` means no value for this window. May be called
    /// more than once for the same window.
    fn finish(state: &Self::State, window: Window) -> Result<Option<f64>>;
}
