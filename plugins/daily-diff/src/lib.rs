//! `daily-diff`: a cumulative meter's reading at the window's end minus its reading at the
//! window's start (SPEC: AggDayDiff). Asks the host for the sample stamped exactly at the
//! window's start (`INCLUDES_WINDOW_START`); every other sample is ignored. No value unless
//! both readings are there. When one instant has several readings, the last one folded wins.

use iot_plugin::{Aggregation, Result, Sample, State, Window};

/// State version 2 (18 bytes; version 1 packed both flags in one byte, 17 bytes).
#[derive(Default, State)]
pub struct Ends {
    start: Option<f64>,
    end: Option<f64>,
}

pub struct DailyDiff;

impl Aggregation for DailyDiff {
    const NAME: &'static str = "daily-diff";
    const STATE_VERSION: u32 = 2;
    const INCLUDES_WINDOW_START: bool = true;
    type Params = ();
    type State = Ends;

    fn fold(state: &mut Ends, window: Window, samples: &[Sample]) -> Result<()> {
        for sample in samples {
            if sample.ts_ms == window.start_ms {
                state.start = Some(sample.value);
            } else if sample.ts_ms == window.end_ms {
                state.end = Some(sample.value);
            }
        }
        Ok(())
    }

    fn finish(state: &Ends, _: Window) -> Result<Option<f64>> {
        Ok(state.start.zip(state.end).map(|(start, end)| end - start))
    }
}

iot_plugin::export!(DailyDiff);
