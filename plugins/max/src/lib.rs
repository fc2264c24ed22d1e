//! `max`: the largest value a window received (e.g. a day's peak temperature). No sample,
//! no value. Of equal values the first folded is kept, so `-0.0` and `0.0` cannot make the
//! result depend on how the host batches the samples.

use iot_plugin::{Aggregation, Result, Sample, State, Window};

/// State version 1: 9 bytes.
#[derive(Default, State)]
pub struct Largest(Option<f64>);

pub struct Max;

impl Aggregation for Max {
    const NAME: &'static str = "max";
    const STATE_VERSION: u32 = 1;
    type Params = ();
    type State = Largest;

    fn fold(state: &mut Largest, _: Window, samples: &[Sample]) -> Result<()> {
        for sample in samples {
            if state.0.is_none_or(|max| sample.value > max) {
                state.0 = Some(sample.value);
            }
        }
        Ok(())
    }

    fn finish(state: &Largest, _: Window) -> Result<Option<f64>> {
        Ok(state.0)
    }
}

iot_plugin::export!(Max);
