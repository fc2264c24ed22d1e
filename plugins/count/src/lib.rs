//! `count`: how many samples a window received, whatever their values (e.g. a day's motion
//! events). A window with no sample counts 0.

use iot_plugin::{Aggregation, Result, Sample, State, Window};

/// State version 1: 8 bytes.
#[derive(Default, State)]
pub struct Seen(u64);

pub struct Count;

impl Aggregation for Count {
    const NAME: &'static str = "count";
    const STATE_VERSION: u32 = 1;
    type Params = ();
    type State = Seen;

    fn fold(state: &mut Seen, _: Window, samples: &[Sample]) -> Result<()> {
        state.0 += samples.len() as u64;
        Ok(())
    }

    fn finish(state: &Seen, _: Window) -> Result<Option<f64>> {
        Ok(Some(state.0 as f64))
    }
}

iot_plugin::export!(Count);
