//! `out-of-band`, an alarm rule: raises an alarm when `readings` consecutive readings (in
//! the order they arrive) are outside [`low`, `high`], once per such run, at the reading
//! that completes it; its value is that reading. A run is counted within one day window
//! (it starts again at midnight).

use iot_plugin::{AlarmRule, Alarms, Error, Params, Result, Sample, State, Window};

#[derive(Params)]
pub struct Band {
    low: f64,
    high: f64,
    #[param(default = "3")]
    readings: u32,
}

/// State version 1: 24 bytes.
#[derive(Default, State)]
pub struct Run {
    low: f64,
    high: f64,
    needed: u32,
    /// Consecutive readings out of the band so far.
    length: u32,
}

pub struct OutOfBand;

impl AlarmRule for OutOfBand {
    const NAME: &'static str = "out-of-band";
    const STATE_VERSION: u32 = 1;
    type Params = Band;
    type State = Run;

    fn init(band: Band, _: u32, _: Window) -> Result<Run> {
        let ordered = band.low.partial_cmp(&band.high) == Some(std::cmp::Ordering::Less);
        if !ordered || band.readings == 0 {
            return Err(Error::new(
                "needs low < high (both numbers) and readings ≥ 1",
            ));
        }
        Ok(Run {
            low: band.low,
            high: band.high,
            needed: band.readings,
            length: 0,
        })
    }

    fn fold(run: &mut Run, _: Window, samples: &[Sample], alarms: &mut Alarms) -> Result<()> {
        for sample in samples {
            if (run.low..=run.high).contains(&sample.value) {
                run.length = 0;
                continue;
            }
            run.length = run.length.saturating_add(1);
            if run.length == run.needed {
                let evidence = format!(
                    "{} readings in a row outside [{}, {}], the last {}",
                    run.needed, run.low, run.high, sample.value
                );
                alarms.raise(sample.ts_ms, sample.value, evidence);
            }
        }
        Ok(())
    }
}

iot_plugin::export_rule!(OutOfBand);
