//! `mean`: the mean of a window's values: their sum, added in the order they are folded,
//! divided by their count (e.g. a day's temperature). No sample, no value.

use iot_plugin::{Aggregation, Result, Sample, State, Window};

/// The total and the number of samples so far (state version 1: 16 bytes).
#[derive(Default, State)]
pub struct Totals(f64, u64);

pub struct Mean;

impl Aggregation for Mean {
    const NAME: &'static str = "mean";
    const STATE_VERSION: u32 = 1;
    type Params = ();
    type State = Totals;

    fn fold(Totals(total, count): &mut Totals, _: Window, samples: &[Sample]) -> Result<()> {
        samples.iter().for_each(|sample| *total += sample.value);
        *count += samples.len() as u64;
        Ok(())
    }

    fn finish(&Totals(total, count): &Totals, _: Window) -> Result<Option<f64>> {
        Ok((count > 0).then(|| total / count as f64))
    }
}

iot_plugin::export!(Mean);
