//! End-to-end tests of the whole system on real Kafka and RedisTimeSeries.
//!
//! - [`fixture`]: the one place that starts the services (through `scripts/stack up`), pins
//!   their versions and hands each test its own topics and key prefix.
//! - [`topic`]: reading back what was really sent to, or written by, a topic.
//! - [`harness`]: the real host run in-process over a test's topics; hand-made records.
//! - [`live_host`]: the real host binary running live, with a deploy folder of its own.
//! - [`load`]: simulated load that runs until the test has seen what it waits for.
//! - [`oracle`]: expected stored series computed independently from what was sent;
//!   [`alarm_oracle`]: the alarms the shipped alarm rules must raise.
//! - [`repartition`]: the repartition stage as a process a test can kill.
//! - [`progress`]: how many records a host under test made durable, and waits for more.
//! - [`webdriver`]: headless Chromium for the live page's browser test.
//! - [`metrics_scrape`]: a live host's `/metrics` read as numbers.
//! - [`prometheus`]: a Prometheus server scraping a test's host, for the metrics dashboard.
//! - [`redis_read`]: reading stored series back by label.

pub mod alarm_oracle;
pub mod fixture;
pub mod harness;
pub mod live_host;
pub mod load;
pub mod measure;
pub mod metrics_scrape;
pub mod oracle;
pub mod progress;
pub mod prometheus;
pub mod redis_read;
pub mod repartition;
pub mod store_batches;
pub mod topic;
pub mod webdriver;
