//! Reading a live host's Prometheus metrics (`/metrics`) as numbers.

use std::collections::BTreeMap;
use std::time::Duration;

/// Scraped samples, `name{labels}` → value.
pub type Samples = BTreeMap<String, f64>;

/// How long one scrape may take: a host frozen by a test (SIGSTOP) must not hang its
/// caller, which treats no answer as "not yet".
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

/// The text of `{base}/metrics`, or `None` while the host does not answer.
pub fn scrape_text(base: &str) -> Option<String> {
    ureq::get(&format!("{base}/metrics"))
        .config()
        .timeout_global(Some(SCRAPE_TIMEOUT))
        .build()
        .call()
        .ok()?
        .body_mut()
        .read_to_string()
        .ok()
}

/// The samples of `{base}/metrics`, or `None` while the host does not answer.
pub fn scrape(base: &str) -> Option<Samples> {
    let text = scrape_text(base)?;
    Some(
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                Some((name.to_owned(), value.parse().ok()?))
            })
            .collect(),
    )
}

/// The sum of the samples whose name is `family` and whose labels contain every one of
/// `labels` (`key="value"`).
pub fn total(samples: &Samples, family: &str, labels: &[&str]) -> f64 {
    samples
        .iter()
        .filter(|(name, _)| {
            name.split('{').next() == Some(family) && labels.iter().all(|l| name.contains(l))
        })
        .map(|(_, v)| v)
        .sum()
}

/// The `partition` label of every sample of `family` whose value is `value`, in order.
pub fn partitions_at(samples: &Samples, family: &str, value: f64) -> Vec<i32> {
    let mut partitions: Vec<i32> = samples
        .iter()
        .filter(|(name, &v)| name.split('{').next() == Some(family) && v == value)
        .filter_map(|(name, _)| {
            let (_, rest) = name.split_once("partition=\"")?;
            rest.split('"').next()?.parse().ok()
        })
        .collect();
    partitions.sort_unstable();
    partitions
}
