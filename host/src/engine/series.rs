//! The registry of series the engine writes: ids for the hot path, keys and labels for the
//! store. Each series is announced once in [`Effects::new_series`] so the store creates it
//! (duplicate policy LAST) before its first sample.

use iot_protocol::series::KeyLayout;
use iot_protocol::{Kind, Sensor, SeriesName};

use super::effects::{Effects, SeriesDef, SeriesId};
use super::site::SiteState;
use crate::pipeline::Output;

pub struct SeriesRegistry {
    prefix: String,
    layout: KeyLayout,
    keys: Vec<String>,
    ids: super::FastMap<SeriesName, SeriesId>,
}

impl SeriesRegistry {
    pub fn new(prefix: String, layout: KeyLayout) -> SeriesRegistry {
        SeriesRegistry {
            prefix,
            layout,
            keys: Vec::new(),
            ids: super::FastMap::default(),
        }
    }

    pub fn key(&self, id: SeriesId) -> &str {
        &self.keys[id as usize]
    }

    /// The raw, LateAccepted or LateRej series of a sensor, cached in the site state.
    pub fn input_series(
        &mut self,
        site_name: &str,
        site: &mut SiteState,
        sensor: Sensor,
        kind: Kind,
        effects: &mut Effects,
    ) -> SeriesId {
        let column = match kind {
            Kind::Raw => 0,
            Kind::LateAccepted => 1,
            _ => 2,
        };
        if let Some(id) = site.input_series[sensor.index()][column] {
            return id;
        }
        let id = self.register(
            SeriesName::new(site_name, sensor.name(), kind),
            sensor.unit(),
            effects,
        );
        site.input_series[sensor.index()][column] = Some(id);
        id
    }

    pub fn output_series(
        &mut self,
        site_name: &str,
        site: &mut SiteState,
        output: usize,
        spec: &Output,
        effects: &mut Effects,
    ) -> SeriesId {
        if let Some(id) = site.output_series[output] {
            return id;
        }
        let id = self.register(
            SeriesName::new(site_name, spec.name.clone(), spec.kind),
            &spec.unit,
            effects,
        );
        site.output_series[output] = Some(id);
        id
    }

    fn register(&mut self, name: SeriesName, unit: &str, effects: &mut Effects) -> SeriesId {
        if let Some(&id) = self.ids.get(&name) {
            return id;
        }
        let id = self.keys.len() as SeriesId;
        let key = name.key_in(&self.prefix, self.layout);
        self.keys.push(key.clone());
        self.ids.insert(name.clone(), id);
        effects.new_series.push(SeriesDef {
            id,
            name,
            key,
            unit: unit.to_owned(),
        });
        id
    }
}
