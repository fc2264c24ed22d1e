//! Taking input: one record at a time, decoded, classified against its site's clock, and
//! routed to the day windows of the outputs that read its sensor; bad records to
//! dead-letter with their reason.

use iot_protocol::record::{parse_record, Reading};
use iot_protocol::time::{format_ts, interval_end_window_end, DAY_MS};
use iot_protocol::Kind;
use serde_json::json;

use super::lateness::{Lateness, LatenessPolicy};
use super::site::SiteState;
use super::{
    Engine, OutRecord, OutTopic, PartitionState, SourceRecord, StoredSample, NO_TENANT, SPLIT_SITE,
};
use crate::plugin::Sample;

impl Engine {
    /// Takes one record. Records below the partition's checkpoint were already stored
    /// before a restart and are skipped: nothing is counted twice.
    pub fn process(&mut self, record: &SourceRecord) {
        if self.fenced.contains(&record.partition) {
            self.stats.skipped_fenced += 1;
            return;
        }
        let partition = self
            .partitions
            .entry(record.partition)
            .or_insert_with(|| PartitionState::placed_at(0));
        if record.offset < partition.next_offset {
            self.stats.skipped_replayed += 1;
            return;
        }
        partition.next_offset = record.offset + 1;
        partition.moved = true;
        self.stats.records += 1;
        // Borrow the config's default site for parsing without cloning it per record.
        let default_site = std::mem::take(&mut self.config.default_site);
        match parse_record(&record.payload, &default_site, self.config.max_record_bytes) {
            Ok(reading) => self.accept(record, reading),
            Err(error) => self.dead_letter(record, error.reason.as_str(), &error.detail),
        }
        self.config.default_site = default_site;
    }

    pub(super) fn accept(&mut self, record: &SourceRecord, reading: Reading<'_>) {
        if !self.sites.contains_key(reading.site.as_ref()) {
            let Some(tenant) = self.tenant_of(&reading.site) else {
                let detail = format!(
                    "no tenant owns site {:?}: add it to a tenant's `sites` in the tenants file",
                    reading.site
                );
                self.dead_letter(record, NO_TENANT, &detail);
                return;
            };
            let outputs = self.tenants[tenant].output_names.len();
            self.sites.insert(
                reading.site.to_string(),
                SiteState::new(record.partition, tenant, outputs),
            );
        }
        let site_name = reading.site.as_ref();
        let site = self.sites.get_mut(site_name).expect("inserted above");
        if site.partition != record.partition {
            let first = site.partition;
            self.split_site(record, site_name, first);
            return;
        }
        let tenant = &self.tenants[site.tenant];
        let outputs = tenant.output_names.len();
        site.touched = true;
        // Filed by its interval's end (the stamp itself unless `--stamps interval-start`);
        // stored with its own stamp.
        let at = self
            .config
            .stamps
            .interval_end_instant(reading.ts_ms, reading.sensor);
        let end = interval_end_window_end(at);
        let lateness = self.config.lateness.classify(end, site.newest_ts);
        let kind = match lateness {
            Lateness::OnTime => Kind::Raw,
            Lateness::Accepted => Kind::LateAccepted,
            Lateness::Rejected => Kind::LateRej,
        };
        let series =
            self.series
                .input_series(site_name, site, reading.sensor, kind, &mut self.effects);
        self.effects.samples.push(StoredSample {
            series,
            partition: site.partition,
            ts_ms: reading.ts_ms,
            value: reading.value,
        });
        match lateness {
            Lateness::OnTime => self.stats.on_time += 1,
            Lateness::Accepted => self.stats.late_accepted += 1,
            Lateness::Rejected => {
                self.stats.late_rejected += 1;
                let watermark = self.config.lateness.watermark(site.newest_ts);
                self.effects.records.push(late_rejected_record(
                    &reading,
                    end,
                    watermark,
                    &self.config.lateness,
                ));
                return;
            }
        }
        site.newest_ts = site.newest_ts.max(at);
        for &(output, input) in &tenant.pipeline.routes_by_sensor[reading.sensor.index()] {
            let sample = Sample::new(input, at, reading.value);
            push_sample(site, end, output, outputs, sample);
            // A reading at a day's start instant also opens the next day for plugins that
            // need both ends (daily difference of a cumulative meter).
            if at == end && tenant.includes_window_start[output] {
                push_sample(site, end + DAY_MS, output, outputs, sample);
            }
        }
    }

    /// A reading of a site on another partition than the site's first one: its watermark
    /// would be advanced by whichever partition is read first, so it is not folded anywhere
    /// but dead-lettered (nothing is lost: it can be replayed once the producer keys by
    /// site), and the split is logged once per site and partition.
    pub(super) fn split_site(&mut self, record: &SourceRecord, site: &str, first: i32) {
        let detail = format!(
            "site {site:?} arrives on partition {first} and also on partition {}: all readings \
             of a site must be on one partition (key records by site id, or repartition the \
             topic); this reading is not aggregated",
            record.partition
        );
        if self
            .split_reported
            .insert((site.to_owned(), record.partition))
        {
            tracing::warn!(
                site,
                first_partition = first,
                other_partition = record.partition,
                "{detail}"
            );
        }
        self.dead_letter(record, SPLIT_SITE, &detail);
    }

    pub(super) fn dead_letter(
        &mut self,
        record: &SourceRecord,
        reason: &'static str,
        detail: &str,
    ) {
        *self.stats.dead_letters.entry(reason).or_default() += 1;
        const MAX_PAYLOAD_ECHO: usize = 2048;
        let echo = &record.payload[..record.payload.len().min(MAX_PAYLOAD_ECHO)];
        let value = json!({
            "reason": reason,
            "detail": detail,
            "payload": String::from_utf8_lossy(echo),
            "payload_bytes": record.payload.len(),
            "topic": self.config.input_topic,
            "partition": record.partition,
            "offset": record.offset,
        });
        self.effects.records.push(OutRecord {
            topic: OutTopic::DeadLetter,
            key: record
                .key
                .as_deref()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
            value: value.to_string(),
        });
    }
}

fn push_sample(site: &mut SiteState, end: i64, output: usize, outputs: usize, sample: Sample) {
    if !site.computes(output, end) {
        return;
    }
    let day = site.day_mut(end, outputs);
    let slot = &mut day.slots[output];
    if day.emitted {
        slot.dirty = true;
    }
    slot.pending.push(sample);
}

fn late_rejected_record(
    reading: &Reading<'_>,
    end: i64,
    watermark: i64,
    policy: &LatenessPolicy,
) -> OutRecord {
    OutRecord {
        topic: OutTopic::LateRejected,
        key: Some(reading.site.to_string()),
        value: json!({
            "site": reading.site,
            "sensor": reading.sensor.name(),
            "ts": format_ts(reading.ts_ms),
            "value": reading.value,
            "watermark": format_ts(watermark),
            "reason": format!(
                "its day ended {} and the site's watermark {} is beyond the allowed lateness of {} ms",
                format_ts(end), format_ts(watermark), policy.allowed_lateness_ms
            ),
        })
        .to_string(),
    }
}
