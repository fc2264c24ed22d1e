//! HTTP routes of the live page: `/` (the page), `/app.js`, `/api/sites`, `/api/series`,
//! `/api/alarms`, `POST /api/commands` (`commands.rs`), and `/ws` (points, alarms and
//! command acknowledgements as they come); and `/metrics`, the host's Prometheus metrics.

use std::net::SocketAddr;

use anyhow::Context as _;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use tokio::sync::broadcast;

use super::commands::{self, CommandSender, CommandsConfig};
use crate::store::RedisReader;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
/// uPlot, vendored from npm by scripts/vendor-uplot (MIT, `assets/vendor/LICENSE`).
const UPLOT_JS: &str = include_str!("assets/vendor/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("assets/vendor/uPlot.min.css");

/// Points of history a panel loads when the page opens.
const HISTORY_POINTS: usize = 2000;
/// Alarms of history the alarms list loads (the newest of each rule's series).
const HISTORY_ALARMS: usize = 200;

#[derive(Clone)]
struct AppState {
    /// One Redis or a cluster: queries by label ask every shard.
    redis: RedisReader,
    key_prefix: String,
    live: broadcast::Sender<String>,
    /// `None`: the page cannot send commands.
    commands: Option<CommandSender>,
}

/// Serves the live page until the process ends; with `commands`, it also sends device
/// commands and shows their acknowledgements (`commands.rs`).
pub async fn serve(
    addr: SocketAddr,
    redis_url: &str,
    key_prefix: String,
    live: broadcast::Sender<String>,
    commands: Option<CommandsConfig>,
) -> anyhow::Result<()> {
    let redis = RedisReader::connect(redis_url)
        .await
        .context("live page: cannot read Redis")?;
    let sender = match &commands {
        Some(config) => {
            tokio::spawn(commands::forward_acks(config.clone(), live.clone()));
            Some(CommandSender::connect(config)?)
        }
        None => None,
    };
    let state = AppState {
        redis,
        key_prefix,
        live,
        commands: sender,
    };
    let app = Router::new()
        .route("/", get(|| async { Html(INDEX_HTML) }))
        .route(
            "/app.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    APP_JS,
                )
            }),
        )
        .route(
            "/vendor/uPlot.iife.min.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    UPLOT_JS,
                )
            }),
        )
        .route(
            "/vendor/uPlot.min.css",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
                    UPLOT_CSS,
                )
            }),
        )
        .route("/api/sites", get(sites))
        .route("/api/series", get(series))
        .route("/api/alarms", get(alarms))
        .route("/api/commands", post(command))
        .route("/ws", get(websocket))
        .route("/metrics", get(metrics))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("live page: cannot listen on {addr} (is another host running? use --http to pick another address)"))?;
    tracing::info!("live page on http://{addr}/");
    axum::serve(listener, app)
        .await
        .context("live page server stopped")
}

/// Sites that have raw series, from the series' labels.
async fn sites(State(mut state): State<AppState>) -> Response {
    let mut query = redis::cmd("TS.QUERYINDEX");
    query.arg("kind=raw");
    let keys: redis::RedisResult<Vec<String>> = state.redis.query_every_shard(query).await;
    match keys {
        Ok(keys) => {
            // `<prefix><site>:…`, or `<prefix>{<site>}:…` on a cluster.
            let mut sites: Vec<String> = keys
                .iter()
                .filter_map(|k| k.strip_prefix(&state.key_prefix))
                .filter_map(|rest| rest.split(':').next())
                .map(|site| {
                    site.trim_start_matches('{')
                        .trim_end_matches('}')
                        .to_owned()
                })
                .collect();
            sites.sort();
            sites.dedup();
            Json(sites).into_response()
        }
        Err(e) => (StatusCode::BAD_GATEWAY, format!("Redis: {e}")).into_response(),
    }
}

#[derive(Deserialize)]
struct SeriesQuery {
    site: String,
    sensor: String,
    kind: String,
}

/// The newest points of one series, oldest first.
async fn series(State(mut state): State<AppState>, Query(q): Query<SeriesQuery>) -> Response {
    let valid = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    if !(valid(&q.site) && valid(&q.sensor) && valid(&q.kind)) {
        return (
            StatusCode::BAD_REQUEST,
            "site, sensor and kind are letters, digits, '-', '_' or '.'",
        )
            .into_response();
    }
    let Some(kind) = iot_protocol::Kind::parse(&q.kind) else {
        return (StatusCode::BAD_REQUEST, "kind is not a series kind").into_response();
    };
    let name = iot_protocol::SeriesName::new(&q.site, &q.sensor, kind);
    let key = state.redis.series_key(&state.key_prefix, &name);
    let rows: redis::RedisResult<Vec<(i64, String)>> = redis::cmd("TS.REVRANGE")
        .arg(&key)
        .arg("-")
        .arg("+")
        .arg("COUNT")
        .arg(HISTORY_POINTS)
        .query_async(&mut state.redis)
        .await;
    match rows {
        Ok(mut rows) => {
            rows.reverse();
            let points: Vec<(i64, f64)> = rows
                .into_iter()
                .filter_map(|(ts, v)| Some((ts, v.parse().ok()?)))
                .collect();
            Json(points).into_response()
        }
        // A series not written yet is an empty panel, not an error.
        Err(e) if e.to_string().contains("does not exist") => {
            Json(Vec::<(i64, f64)>::new()).into_response()
        }
        Err(e) => (StatusCode::BAD_GATEWAY, format!("Redis: {e}")).into_response(),
    }
}

/// One series of a `TS.MRANGE … WITHLABELS` reply: key, labels, (timestamp, value) points.
type MrangeSeries = (String, Vec<(String, String)>, Vec<(i64, String)>);

#[derive(Deserialize)]
struct AlarmsQuery {
    site: String,
}

/// The site's newest alarms, from its `Alarm` series (one per rule): `[ts, rule, value]`,
/// newest first. The evidence is not stored in Redis; the live messages carry it.
async fn alarms(State(mut state): State<AppState>, Query(q): Query<AlarmsQuery>) -> Response {
    if q.site.is_empty()
        || !q
            .site
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return (
            StatusCode::BAD_REQUEST,
            "site is letters, digits, '-', '_' or '.'",
        )
            .into_response();
    }
    let mut query = redis::cmd("TS.MREVRANGE");
    query
        .arg("-")
        .arg("+")
        .arg("COUNT")
        .arg(HISTORY_ALARMS)
        .arg("WITHLABELS")
        .arg("FILTER")
        .arg(format!("site={}", q.site))
        .arg("kind=Alarm");
    let reply: redis::RedisResult<Vec<MrangeSeries>> = state.redis.query_every_shard(query).await;
    match reply {
        Ok(series) => {
            let mut rows: Vec<(i64, String, f64)> = series
                .into_iter()
                .filter(|(key, _, _)| key.starts_with(&state.key_prefix))
                .flat_map(|(_, labels, points)| {
                    let rule = labels
                        .into_iter()
                        .find(|(name, _)| name == "sensor")
                        .map(|(_, rule)| rule)
                        .unwrap_or_default();
                    points
                        .into_iter()
                        .filter_map(move |(ts, v)| Some((ts, rule.clone(), v.parse().ok()?)))
                })
                .collect();
            rows.sort_by_key(|row| std::cmp::Reverse(row.0));
            rows.truncate(HISTORY_ALARMS);
            Json(rows).into_response()
        }
        Err(e) => (StatusCode::BAD_GATEWAY, format!("Redis: {e}")).into_response(),
    }
}

/// `POST /api/commands` (`commands.rs`): a command for a site this host has readings of.
async fn command(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let mut redis = state.redis.clone();
    let site_known = |site: String| async move {
        let mut query = redis::cmd("TS.QUERYINDEX");
        query.arg(format!("site={site}")).arg("kind=raw");
        let keys: redis::RedisResult<Vec<String>> = redis.query_every_shard(query).await;
        keys.map(|keys| !keys.is_empty())
            .map_err(|e| format!("Redis: {e}"))
    };
    commands::post(state.commands.as_ref(), &headers, &body, site_known).await
}

async fn websocket(State(state): State<AppState>, upgrade: WebSocketUpgrade) -> Response {
    let receiver = state.live.subscribe();
    upgrade.on_upgrade(move |socket| forward(socket, receiver))
}

async fn forward(mut socket: WebSocket, mut receiver: broadcast::Receiver<String>) {
    loop {
        match receiver.recv().await {
            Ok(message) => {
                if socket.send(Message::Text(message.into())).await.is_err() {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Lagged(skipped)) => {
                let note = serde_json::json!({ "lagged": skipped }).to_string();
                if socket.send(Message::Text(note.into())).await.is_err() {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// The host's Prometheus metrics (`metrics.rs`), in the text format.
async fn metrics() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        crate::metrics::global().render(),
    )
}
