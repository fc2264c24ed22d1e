//! Two-way control from the live page: `POST /api/commands` sends a device command to the
//! `commands` topic, and the devices' acknowledgements (`command-acks`) are pushed to the
//! page over the WebSocket.
//!
//! Guarantees: a command is sent only if it is valid (`iot_protocol::command`), names a
//! site the host has readings of, and comes from the page itself: the request's `Origin`
//! must be the page's own and its body JSON (a form on another site can send neither).
//! The reply comes once Kafka acknowledged the record (202), or says why nothing was sent
//! (400 invalid, 403 another origin, 404 unknown site, 415 not JSON, 502 Kafka).
//!
//! Duties of the caller: create both topics (`scripts/stack up` does).
//!
//! Partitioning: a command's key is its site id, so one site's commands stay in order.
//!
//! Errors: an acknowledgement that is not JSON is skipped with a warning; a failing
//! acknowledgement consumer is logged and the page simply sees no acknowledgements.

use std::time::Duration;

use anyhow::Context as _;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use iot_protocol::command::Command;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::broadcast;

/// Where commands go and acknowledgements come from.
#[derive(Debug, Clone)]
pub struct CommandsConfig {
    pub bootstrap: String,
    pub commands_topic: String,
    pub acks_topic: String,
}

/// How long sending one command may take before the page is told it failed.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends commands; cheap to clone.
#[derive(Clone)]
pub struct CommandSender {
    producer: FutureProducer,
    topic: String,
}

impl CommandSender {
    pub fn connect(config: &CommandsConfig) -> anyhow::Result<CommandSender> {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &config.bootstrap)
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", "10000")
            .create()
            .context("cannot create the Kafka producer of commands")?;
        Ok(CommandSender {
            producer,
            topic: config.commands_topic.clone(),
        })
    }

    async fn send(&self, command: &Command) -> Result<(), String> {
        let payload = command.to_json();
        let record = FutureRecord::to(&self.topic)
            .key(command.site.as_str())
            .payload(payload.as_str());
        self.producer
            .send(record, SEND_TIMEOUT)
            .await
            .map(|_| ())
            .map_err(|(e, _)| format!("Kafka did not take the command: {e}"))
    }
}

/// Whether the request comes from the page itself: its `Origin` is `http(s)://<Host>`.
pub fn same_origin(headers: &HeaderMap) -> Result<(), String> {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let host = text(header::HOST).unwrap_or_default();
    match text(header::ORIGIN) {
        Some(origin)
            if !host.is_empty()
                && (origin == format!("http://{host}") || origin == format!("https://{host}")) =>
        {
            Ok(())
        }
        other => Err(format!(
            "commands are accepted only from the live page's own origin (http://{host}); \
             this request's Origin is {}",
            other.unwrap_or("missing")
        )),
    }
}

fn refuse(status: StatusCode, why: impl Into<String>) -> Response {
    let why = why.into();
    (status, Json(serde_json::json!({ "error": why }))).into_response()
}

/// `POST /api/commands`: checks, then sends; `site_known(site)` says whether the host has
/// readings of a site.
pub async fn post<F, Fut>(
    sender: Option<&CommandSender>,
    headers: &HeaderMap,
    body: &[u8],
    site_known: F,
) -> Response
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = Result<bool, String>>,
{
    let Some(sender) = sender else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "this host sends no commands (it runs without Kafka topics for them)",
        );
    };
    if let Err(why) = same_origin(headers) {
        return refuse(StatusCode::FORBIDDEN, why);
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    if !json {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the command as JSON (Content-Type: application/json)",
        );
    }
    let parsed = match Command::parse(body) {
        Ok(parsed) => parsed,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e.to_string()),
    };
    match site_known(parsed.site.clone()).await {
        Ok(true) => {}
        Ok(false) => {
            return refuse(
                StatusCode::NOT_FOUND,
                format!("site {:?} has no readings here: no such site", parsed.site),
            )
        }
        Err(e) => return refuse(StatusCode::BAD_GATEWAY, e),
    }
    if let Err(e) = sender.send(&parsed).await {
        return refuse(StatusCode::BAD_GATEWAY, e);
    }
    tracing::info!(id = %parsed.id, site = %parsed.site, device = parsed.device.name(), action = parsed.action.name(), "command sent");
    let reply = serde_json::json!({ "id": parsed.id, "status": "sent" });
    (StatusCode::ACCEPTED, Json(reply)).into_response()
}

/// Forwards every acknowledgement from now on to the page's WebSocket clients, as
/// `{"acks": [ack]}`, until the process ends.
pub async fn forward_acks(config: CommandsConfig, live: broadcast::Sender<String>) {
    if let Err(e) = forward(&config, &live).await {
        tracing::warn!(
            topic = %config.acks_topic,
            "command acknowledgements will not reach the live page: {e:#}"
        );
    }
}

async fn forward(config: &CommandsConfig, live: &broadcast::Sender<String>) -> anyhow::Result<()> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &config.bootstrap)
        .set("group.id", "iot-host-live-acks")
        .set("enable.auto.commit", "false")
        .create()
        .context("cannot create the Kafka consumer of command acknowledgements")?;
    let metadata = consumer
        .fetch_metadata(Some(&config.acks_topic), Duration::from_secs(10))
        .context("cannot read the acknowledgement topic's metadata")?;
    let partitions = metadata
        .topics()
        .first()
        .map_or(0, |t| t.partitions().len());
    anyhow::ensure!(
        partitions > 0,
        "topic {:?} does not exist (scripts/stack up creates it)",
        config.acks_topic
    );
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        assignment.add_partition_offset(&config.acks_topic, p, Offset::End)?;
    }
    consumer.assign(&assignment)?;
    loop {
        let message = consumer.recv().await?;
        let payload = message.payload().unwrap_or_default();
        match serde_json::from_slice::<serde_json::Value>(payload) {
            Ok(ack) => {
                let _ = live.send(serde_json::json!({ "acks": [ack] }).to_string());
            }
            Err(e) => tracing::warn!("skipped an acknowledgement that is not JSON: {e}"),
        }
    }
}
