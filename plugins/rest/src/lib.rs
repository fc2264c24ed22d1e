//! `rest`: input 0 minus every other input, computed as ((x0 − x1) − x2) − … in input
//! order (SPEC: AggDayRest, a day's leak metric). Takes 2 to 64 inputs; the host folds one
//! sample per input that has a value (`input` = its position). No value unless every
//! declared input has one; if an input gets several samples, the last one folded wins.

use iot_plugin::{Aggregation, Error, Result, Sample, State, Window};

/// State version 1: 9 bytes per declared input (present, value).
#[derive(Default, State)]
pub struct Inputs(Vec<Option<f64>>);

pub struct Rest;

impl Aggregation for Rest {
    const NAME: &'static str = "rest";
    const STATE_VERSION: u32 = 1;
    const MIN_INPUTS: u32 = 2;
    const MAX_INPUTS: u32 = 64;
    type Params = ();
    type State = Inputs;

    fn init(_: (), inputs: u32, _: Window) -> Result<Inputs> {
        Ok(Inputs(vec![None; inputs as usize]))
    }

    fn fold(state: &mut Inputs, _: Window, samples: &[Sample]) -> Result<()> {
        let declared = state.0.len();
        for sample in samples {
            let slot = state.0.get_mut(sample.input as usize).ok_or_else(|| {
                let input = sample.input;
                Error::new(format!(
                    "sample for input {input}, but the output declares {declared} inputs"
                ))
            })?;
            *slot = Some(sample.value);
        }
        Ok(())
    }

    fn finish(state: &Inputs, _: Window) -> Result<Option<f64>> {
        let mut values = state.0.iter().copied();
        let Some(Some(first)) = values.next() else {
            return Ok(None);
        };
        // None as soon as any input has no value.
        Ok(values.try_fold(first, |rest, value| Some(rest - value?)))
    }
}

iot_plugin::export!(Rest);
