//! `sum`: the sum of a window's values, added in the order they are folded (e.g. a day's
//! energy). No sample, no value.

use iot_plugin::{Aggregation, Result, Sample, State, Window};

/// The total and the number of samples so far (state version 1: 16 bytes).
#[derive(Default, State)]
pub struct Totals(f64, u64);

pub struct Sum;

impl Aggregation for Sum {
    const NAME: &'static str = "sum";
    const STATE_VERSION: u32 = 1;
    type Params = ();
    type State = Totals;

    fn fold(Totals(total, count): &mut Totals, _: Window, samples: &[Sample]) -> Result<()> {
        samples.iter().for_each(|sample| *total += sample.value);
        *count += samples.len() as u64;
        Ok(())
    }

    fn finish(&Totals(total, count): &Totals, _: Window) -> Result<Option<f64>> {
        Ok((count > 0).then_some(total))
    }
}

iot_plugin::export!(Sum);
