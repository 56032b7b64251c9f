//! The pull API: each complete hour of the file sink's output, over HTTP, with cursors.
//!
//! - `GET /v1/hours`: the complete hours, with their events per topic, and the watermark,
//!   the latest hour at and before which every hour with data is complete.
//! - `GET /v1/transactions?hour=YYYY-MM-DDTHH[&topic=T][&limit=N][&cursor=C]`: one hour's
//!   events in a stable order (topics in the order products, customers, orders, payments,
//!   each in its files' order: part, then position), as NDJSON (the default), a JSON page, or
//!   an Avro container file (one topic). A page ends at `limit` events; `next_cursor` (the
//!   `Next-Cursor` header for NDJSON and Avro) continues it, and following it to the end
//!   returns every event of the hour exactly once.
//! - `GET /openapi.json`: the OpenAPI 3.1 document, generated from the handlers below.
//!
//! What is served is the files themselves ([`hours`] says when an hour is complete), so the
//! API agrees with the files and the ledger, serves the same answers after a restart, and
//! serves a directory written earlier (`simulator serve`). Bodies are streamed from the files
//! a block at a time, so memory stays bounded whatever the hour's size; responses are
//! compressed with gzip when the client accepts it, and carry an entity tag.
//!
//! The events hold customers' personal data: with a bearer token configured (`api.token` or
//! `api.token_file`), `/v1/*` answers 401 without it. The token is never logged or printed.

mod avro;
mod cursor;
mod hours;
mod json;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt as _;
use prometheus::{IntCounterVec, Opts, Registry};
use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use hours::{Layout, ScanError};

use crate::clock::Clock;
use crate::model::{MICROS_PER_HOUR, Timestamp, Topic};
use crate::settings::{Secret, SecretFile, SecretText, optional, secret_file};
use cursor::{Cursor, files_digest};
use hours::{Hour, HourFile, Hours, Scanner};

/// Events per page when `limit` is not given.
pub const DEFAULT_LIMIT: u64 = 10_000;
/// The largest `limit`.
pub const MAX_LIMIT: u64 = 100_000;
/// How long a scan of the directory is reused (real time).
const RESCAN: Duration = Duration::from_secs(1);
/// How long after its end an hour's files and ledger are written (the sink's and the ledger's
/// grace, in simulated time).
const GRACE_MICROS: i64 = 60_000_000;
/// Bytes of body gathered before a chunk is sent.
const CHUNK: usize = 64 * 1024;

const TOKEN: SecretText = SecretText {
    allowed: "a bearer token",
    describe: |_| "set (redacted)".to_owned(),
};

crate::section! {
    /// The pull API, served with the metrics on metrics.addr by every run with a file sink
    /// and by `simulator serve`.
    pub struct ApiSettings in "api" {
        /// A bearer token /v1/* requires (best given in the environment,
        /// SIMULATOR__API__TOKEN); unset with no token_file: no token is required.
        pub token: Option<Secret> = optional(TOKEN);
        /// A file holding the bearer token (a mounted secret).
        pub token_file: Option<SecretFile> = optional(secret_file("the API's bearer token")),
            flag = "--api-token-file";
    }
}

impl ApiSettings {
    /// Why the settings are wrong, if they are: both forms of the token given.
    pub fn check(&self) -> Result<(), String> {
        match (&self.token, &self.token_file) {
            (Some(_), Some(_)) => {
                Err("api.token and api.token_file (--api-token-file) are both set: give one".into())
            }
            _ => Ok(()),
        }
    }

    /// The token in force (checked settings hold at most one form).
    pub fn token(&self) -> Option<Secret> {
        self.token
            .clone()
            .or_else(|| self.token_file.as_ref().map(|f| f.secret.clone()))
    }
}

/// The simulation writing the directory, when one is: hours it has not reached yet are
/// "not complete yet" (409) rather than unknown (404).
#[derive(Debug, Clone)]
pub struct Live {
    pub clock: Clock,
    /// The run's planned end, exclusive.
    pub end: Option<Timestamp>,
}

/// The API's metrics.
#[derive(Debug, Clone)]
struct ApiMetrics {
    requests: IntCounterVec,
    bytes: IntCounterVec,
}

impl ApiMetrics {
    fn register(registry: &Registry) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new(
                "simulator_api_requests_total",
                "Requests to the pull API, by route and status code.",
            ),
            &["route", "status"],
        )?;
        let bytes = IntCounterVec::new(
            Opts::new(
                "simulator_api_response_bytes_total",
                "Bytes of response bodies the pull API served, before compression, by route.",
            ),
            &["route"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(bytes.clone()))?;
        Ok(Self { requests, bytes })
    }
}

struct Cache {
    scanner: Scanner,
    last: Option<(tokio::time::Instant, Arc<Hours>)>,
}

/// The API over one output directory.
pub struct Api {
    cache: Mutex<Cache>,
    token: Option<Secret>,
    live: Option<Live>,
    metrics: ApiMetrics,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("live", &self.live.is_some())
            .finish()
    }
}

impl Api {
    /// The API over `layout`, reporting into `registry`.
    pub fn new(
        layout: Layout,
        token: Option<Secret>,
        live: Option<Live>,
        registry: &Registry,
    ) -> prometheus::Result<Arc<Self>> {
        Ok(Arc::new(Self {
            cache: Mutex::new(Cache {
                scanner: Scanner::new(layout),
                last: None,
            }),
            token,
            live,
            metrics: ApiMetrics::register(registry)?,
        }))
    }

    /// The directory's hours, scanned at most [`RESCAN`] ago.
    async fn hours(self: &Arc<Self>) -> Result<Arc<Hours>, Problem> {
        let api = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let mut cache = api.cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((at, hours)) = &cache.last
                && at.elapsed() < RESCAN
            {
                return Ok(Arc::clone(hours));
            }
            let hours = Arc::new(cache.scanner.scan()?);
            cache.last = Some((tokio::time::Instant::now(), Arc::clone(&hours)));
            Ok(hours)
        })
        .await
        .map_err(|e| Problem::internal(format!("the scan stopped: {e}")))?
        .map_err(|e: ScanError| {
            tracing::error!(error = %e, "cannot scan the output directory");
            Problem::internal(e.to_string())
        })
    }

    /// Scans the directory now, to report one that cannot be read before serving; the scan
    /// answers the first requests. Returns the complete hours found.
    pub fn check(&self) -> Result<usize, ScanError> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let hours = Arc::new(cache.scanner.scan()?);
        let complete = hours.complete().count();
        cache.last = Some((tokio::time::Instant::now(), hours));
        Ok(complete)
    }

    /// Why `hour`, which has no data, is not served: not complete yet (a live run has not
    /// got there) or unknown.
    fn absent(&self, hour: Timestamp) -> Problem {
        let due = Timestamp::from_micros(hour.as_micros() + MICROS_PER_HOUR + GRACE_MICROS);
        match &self.live {
            Some(live) if live.clock.now() < due && live.end.is_none_or(|end| hour < end) => {
                Problem::not_yet(
                    hour,
                    "the simulation has not finished this hour yet".into(),
                    retry_after(Some(live), due),
                )
            }
            _ => Problem::new(
                StatusCode::NOT_FOUND,
                "Unknown hour",
                format!("no data for the hour {}", hour_text(hour)),
                Some("hour"),
            ),
        }
    }
}

/// Seconds to wait before asking again for an hour due at `due` (simulated).
fn retry_after(live: Option<&Live>, due: Timestamp) -> u64 {
    match live {
        Some(live) => live
            .clock
            .real_time_until(due)
            .as_secs()
            .saturating_add(1)
            .clamp(1, 3_600),
        None => 60,
    }
}

/// An hour as the API writes it: `2026-03-02T13`.
fn hour_text(hour: Timestamp) -> String {
    hour.to_datetime().format("%Y-%m-%dT%H").to_string()
}

/// Reads `2026-03-02T13`.
fn parse_hour(text: &str) -> Option<Timestamp> {
    if text.len() != 13 || !text.is_ascii() {
        return None;
    }
    let at = chrono::NaiveDateTime::parse_from_str(&format!("{text}:00:00"), "%Y-%m-%dT%H:%M:%S")
        .ok()?;
    let at = Timestamp::from_datetime(at.and_utc());
    (hour_text(at) == text).then_some(at)
}

/// An error, as an RFC 9457 problem document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// Always `about:blank`: the status code says what kind of problem it is.
    #[serde(rename = "type")]
    kind: &'static str,
    /// A short summary.
    title: &'static str,
    /// The HTTP status code.
    status: u16,
    /// What is wrong, and what to do about it.
    detail: String,
    /// The query parameter at fault, if one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    parameter: Option<&'static str>,
    /// Seconds until asking again may succeed (also the Retry-After header).
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after: Option<u64>,
}

impl Problem {
    fn new(
        status: StatusCode,
        title: &'static str,
        detail: String,
        parameter: Option<&'static str>,
    ) -> Self {
        Self {
            kind: "about:blank",
            title,
            status: status.as_u16(),
            detail,
            parameter,
            retry_after: None,
        }
    }

    fn bad(parameter: &'static str, detail: String) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "Bad parameter",
            detail,
            Some(parameter),
        )
    }

    fn internal(detail: String) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Cannot read the data",
            detail,
            None,
        )
    }

    fn not_yet(hour: Timestamp, why: String, retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::CONFLICT,
                "Hour not complete yet",
                format!(
                    "the hour {} is not complete yet: {why}; ask again later",
                    hour_text(hour)
                ),
                Some("hour"),
            )
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"simulator\""),
            );
        }
        response
    }
}

/// One complete hour.
#[derive(Debug, Serialize, ToSchema)]
pub struct HourSummary {
    /// The hour, UTC, as `YYYY-MM-DDTHH`.
    #[schema(example = "2026-03-02T13")]
    hour: String,
    /// Events of the hour, by topic (every topic, 0 when it has none).
    #[schema(example = json!({"customers": 40, "products": 0, "orders": 812, "payments": 901}))]
    events: BTreeMap<String, u64>,
}

/// The complete hours and the watermark.
#[derive(Debug, Serialize, ToSchema)]
pub struct HoursList {
    /// Every complete hour, in order.
    hours: Vec<HourSummary>,
    /// The latest hour at and before which every hour with data is complete; null when the
    /// first is not.
    #[schema(example = "2026-03-02T13")]
    watermark: Option<String>,
}

/// The complete hours, with their events per topic, and the watermark.
#[utoipa::path(
    get,
    path = "/v1/hours",
    tag = "batches",
    operation_id = "listHours",
    responses(
        (status = 200, description = "The complete hours and the watermark.", body = HoursList),
        (status = 401, description = "A bearer token is required.", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "The directory cannot be read.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_hours(State(api): State<Arc<Api>>) -> Result<Response, Problem> {
    let hours = api.hours().await?;
    let list = HoursList {
        hours: hours
            .complete()
            .map(|hour| {
                let events = hour.events();
                HourSummary {
                    hour: hour_text(hour.start),
                    events: Topic::ALL
                        .iter()
                        .map(|t| (t.to_string(), events.get(t).copied().unwrap_or(0)))
                        .collect(),
                }
            })
            .collect(),
        watermark: hours.watermark().map(hour_text),
    };
    let body = serde_json::to_vec(&list).unwrap_or_default();
    api.metrics
        .bytes
        .with_label_values(&["/v1/hours"])
        .inc_by(body.len() as u64);
    Ok((
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response())
}

/// A topic.
#[derive(Debug, Clone, Copy, ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
enum TopicName {
    Customers,
    Products,
    Orders,
    Payments,
}

/// The query of `/v1/transactions` (documentation: the handler reads the query itself, to
/// name the parameter at fault).
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct TransactionsQuery {
    /// The hour, UTC, as `YYYY-MM-DDTHH`.
    #[param(
        pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}$",
        example = "2026-03-02T13"
    )]
    hour: String,
    /// One topic; without it, every topic of the hour in the order customers, products,
    /// orders, payments (required for `application/avro`).
    #[param(inline)]
    topic: Option<TopicName>,
    /// Events per page, 1 to 100000 (default 10000).
    #[param(minimum = 1, maximum = 100000)]
    limit: Option<u64>,
    /// The `next_cursor` of the previous page, as it was given.
    cursor: Option<String>,
}

/// One page of an hour's events (`application/json`).
#[derive(Debug, Serialize, ToSchema)]
pub struct TransactionsPage {
    /// The hour, UTC, as `YYYY-MM-DDTHH`.
    hour: String,
    /// The topic asked for; null for every topic.
    topic: Option<String>,
    /// The events, each with its `topic` first, amounts as decimal text, instants as RFC 3339.
    #[schema(value_type = Vec<Object>)]
    events: Vec<serde_json::Value>,
    /// The cursor of the next page; null on the last.
    next_cursor: Option<String>,
    /// Whether another page follows.
    has_more: bool,
}

/// The representations of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Ndjson,
    Json,
    Avro,
}

impl Format {
    fn content_type(self) -> &'static str {
        match self {
            Format::Ndjson => "application/x-ndjson",
            Format::Json => "application/json",
            Format::Avro => "application/avro",
        }
    }

    /// The format the `Accept` header prefers (NDJSON without one); `None`: none it accepts.
    fn negotiate(headers: &HeaderMap) -> Option<Self> {
        let Some(accept) = headers.get(header::ACCEPT) else {
            return Some(Format::Ndjson);
        };
        let accept = accept.to_str().ok()?;
        let mut best: Option<(f32, usize, Format)> = None;
        for (order, item) in accept.split(',').enumerate() {
            let mut parts = item.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            let format = match media.as_str() {
                "application/x-ndjson" | "application/ndjson" | "application/jsonl" => {
                    Format::Ndjson
                }
                "application/json" => Format::Json,
                "application/avro" | "avro/binary" => Format::Avro,
                "*/*" | "application/*" => Format::Ndjson,
                _ => continue,
            };
            if q <= 0.0 {
                continue;
            }
            if best.is_none_or(|(bq, border, _)| q > bq || (q == bq && order < border)) {
                best = Some((q, order, format));
            }
        }
        best.map(|(_, _, f)| f)
    }
}

/// The parameters of a `/v1/transactions` request, checked.
struct TransactionsRequest {
    hour: Timestamp,
    topic: Option<Topic>,
    limit: u64,
    cursor: Option<Cursor>,
}

fn parse_query(pairs: Vec<(String, String)>) -> Result<TransactionsRequest, Problem> {
    let mut seen: BTreeMap<&str, String> = BTreeMap::new();
    for (key, value) in pairs {
        let key: &'static str = match key.as_str() {
            "hour" => "hour",
            "topic" => "topic",
            "limit" => "limit",
            "cursor" => "cursor",
            _ => continue,
        };
        if seen.insert(key, value).is_some() {
            return Err(Problem::bad(
                key,
                format!("`{key}` is given more than once"),
            ));
        }
    }
    let hour_given = seen.get("hour").ok_or_else(|| {
        Problem::bad(
            "hour",
            "`hour` is required: the hour, UTC, as YYYY-MM-DDTHH (see /v1/hours)".into(),
        )
    })?;
    let hour = parse_hour(hour_given).ok_or_else(|| {
        Problem::bad(
            "hour",
            format!("`{hour_given}` is not an hour: expected YYYY-MM-DDTHH, like 2026-03-02T13"),
        )
    })?;
    let topic = match seen.get("topic") {
        None => None,
        Some(name) => Some(name.parse::<Topic>().map_err(|_| {
            Problem::bad(
                "topic",
                format!(
                    "`{name}` is not a topic: expected one of {}",
                    Topic::names()
                ),
            )
        })?),
    };
    let limit = match seen.get("limit") {
        None => DEFAULT_LIMIT,
        Some(text) => match text.parse::<u64>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(Problem::bad(
                    "limit",
                    format!(
                        "`{text}` is not a limit: expected a whole number from 1 to {MAX_LIMIT}"
                    ),
                ));
            }
        },
    };
    let cursor = match seen.get("cursor") {
        None => None,
        Some(text) => Some(
            Cursor::decode(text)
                .map_err(|why| Problem::bad("cursor", format!("`cursor` {why}")))?,
        ),
    };
    Ok(TransactionsRequest {
        hour,
        topic,
        limit,
        cursor,
    })
}

/// One hour's events, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/transactions",
    tag = "batches",
    operation_id = "getTransactions",
    params(
        TransactionsQuery,
        ("If-None-Match" = Option<String>, Header, description = "An entity tag of an earlier response: 304 if the page is the same."),
    ),
    responses(
        (status = 200, description = "The page: NDJSON (one event per line, the default), a JSON page, or an Avro object container file of one topic.",
            content(
                (String = "application/x-ndjson"),
                (TransactionsPage = "application/json"),
                (Vec<u8> = "application/avro"),
            ),
            headers(
                ("ETag" = String, description = "The page's entity tag (weak: it holds for every content coding)."),
                ("Next-Cursor" = String, description = "The cursor of the next page, when there is one."),
                ("Event-Count" = u64, description = "Events in this page."),
            )
        ),
        (status = 304, description = "The page has not changed since the entity tag given."),
        (status = 400, description = "A parameter is wrong; `parameter` names it.", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "A bearer token is required.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No data for the hour.", body = Problem, content_type = "application/problem+json"),
        (status = 406, description = "None of the accepted media types is served.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The hour is not complete yet.", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before asking again."))),
        (status = 500, description = "The data cannot be read.", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn transactions(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, Problem> {
    let request = parse_query(pairs)?;
    let format = Format::negotiate(&headers).ok_or_else(|| {
        Problem::new(
            StatusCode::NOT_ACCEPTABLE,
            "Not acceptable",
            "the Accept header takes none of application/x-ndjson, application/json, application/avro".into(),
            None,
        )
    })?;
    if format == Format::Avro && request.topic.is_none() {
        return Err(Problem::bad(
            "topic",
            "`topic` is required for application/avro: an Avro file holds one schema".into(),
        ));
    }
    let hours = api.hours().await?;
    let hour: Arc<Hour> = match hours.get(request.hour) {
        None => return Err(api.absent(request.hour)),
        Some(hour) => match &hour.incomplete {
            Some(why) => {
                let due = Timestamp::from_micros(
                    request.hour.as_micros() + MICROS_PER_HOUR + GRACE_MICROS,
                );
                return Err(Problem::not_yet(
                    request.hour,
                    why.clone(),
                    retry_after(api.live.as_ref(), due),
                ));
            }
            None => Arc::clone(hour),
        },
    };
    let fingerprint = hour.fingerprint();
    let start = match request.cursor {
        None => 0,
        Some(cursor) => {
            if cursor.hour != request.hour || cursor.topic != request.topic {
                return Err(Problem::bad(
                    "cursor",
                    format!(
                        "`cursor` continues the hour {} and {}: ask with the same hour and topic",
                        hour_text(cursor.hour),
                        cursor
                            .topic
                            .map_or_else(|| "every topic".to_owned(), |t| format!("topic {t}"))
                    ),
                ));
            }
            if cursor.files != files_digest(&fingerprint) {
                return Err(Problem::bad(
                    "cursor",
                    "`cursor` was issued for other files of this hour (the directory was \
                     replaced); start again without a cursor"
                        .into(),
                ));
            }
            cursor.position
        }
    };
    let files = hour.selection(request.topic);
    let total: u64 = files.iter().map(|f| f.events).sum();
    if start > total {
        return Err(Problem::bad(
            "cursor",
            "`cursor` points past the hour's events".into(),
        ));
    }
    let end = start.saturating_add(request.limit).min(total);
    let next = (end < total).then(|| {
        Cursor {
            hour: request.hour,
            topic: request.topic,
            position: end,
            files: files_digest(&fingerprint),
        }
        .encode()
    });
    let tag = entity_tag(&fingerprint, request.topic, start, request.limit, format);
    let mut response = if if_none_match(&headers, &tag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let page = Page {
            hour: hour_text(request.hour),
            topic: request.topic,
            files,
            start,
            count: end - start,
            format,
            next: next.clone(),
            sync: fingerprint[..16].try_into().expect("16 bytes"),
        };
        let mut response =
            Response::new(page.stream(api.metrics.bytes.with_label_values(&["/v1/transactions"])));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(format.content_type()),
        );
        headers.insert("event-count", HeaderValue::from(end - start));
        response
    };
    let headers = response.headers_mut();
    headers.insert(
        header::ETAG,
        HeaderValue::from_str(&tag).expect("hex is a valid header"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    headers.insert(
        header::VARY,
        HeaderValue::from_static("accept, accept-encoding"),
    );
    if let Some(next) = next {
        headers.insert(
            "next-cursor",
            HeaderValue::from_str(&next).expect("base64 is a valid header"),
        );
    }
    Ok(response)
}

/// A weak entity tag for one page: the hour's files, the request, the representation.
fn entity_tag(
    fingerprint: &[u8; 32],
    topic: Option<Topic>,
    start: u64,
    limit: u64,
    format: Format,
) -> String {
    let mut digest = Sha256::new();
    digest.update(fingerprint);
    digest.update([topic.map_or(0xff, |t| t.index() as u8)]);
    digest.update(start.to_be_bytes());
    digest.update(limit.to_be_bytes());
    digest.update(format.content_type().as_bytes());
    let hash = digest.finalize();
    let hex: String = hash[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("W/\"{hex}\"")
}

/// Whether `If-None-Match` names `tag` (weak comparison) or is `*`.
fn if_none_match(headers: &HeaderMap, tag: &str) -> bool {
    let opaque = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim() == "*" || opaque(t) == opaque(tag))
}

/// One page to stream: `count` events of `files` from position `start`.
struct Page {
    hour: String,
    topic: Option<Topic>,
    files: Vec<HourFile>,
    start: u64,
    count: u64,
    format: Format,
    next: Option<String>,
    /// The sync marker of an Avro page (from the hour's fingerprint: the same page, the same
    /// bytes).
    sync: [u8; 16],
}

impl Page {
    /// The body, produced on a blocking thread a chunk at a time; a failure part-way ends the
    /// response with an error, so a client never takes a cut page for a whole one.
    fn stream(self, bytes: prometheus::IntCounter) -> Body {
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
        tokio::task::spawn_blocking(move || match self.produce(&tx, &bytes) {
            Ok(()) => {}
            // The client closed the connection (or asked with HEAD): nothing to report.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                tracing::debug!("a client of the pull API left before the end of its page");
            }
            Err(e) => {
                tracing::error!(error = %e, "a page of the pull API failed part-way");
                let _ = tx.blocking_send(Err(e));
            }
        });
        // Fused: the compression layer may poll once more after the end.
        Body::from_stream(
            futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|item| (item, rx))
            })
            .fuse(),
        )
    }

    fn produce(
        self,
        tx: &tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
        bytes: &prometheus::IntCounter,
    ) -> std::io::Result<()> {
        let gone = || std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        let send = |chunk: Vec<u8>| -> std::io::Result<()> {
            if chunk.is_empty() {
                return Ok(());
            }
            bytes.inc_by(chunk.len() as u64);
            tx.blocking_send(Ok(Bytes::from(chunk))).map_err(|_| gone())
        };
        let mut out = Vec::with_capacity(CHUNK * 2);
        let mut avro = None;
        match self.format {
            Format::Json => {
                out.extend_from_slice(b"{\"hour\":");
                out.extend_from_slice(&serde_json::to_vec(&self.hour).unwrap_or_default());
                out.extend_from_slice(b",\"topic\":");
                match self.topic {
                    Some(t) => out.extend_from_slice(format!("\"{t}\"").as_bytes()),
                    None => out.extend_from_slice(b"null"),
                }
                out.extend_from_slice(b",\"events\":[");
            }
            Format::Avro => {
                let schema_text = match self.files.first() {
                    Some(file) => avro::Container::open(&file.path)?.schema_text,
                    None => crate::encoding::schemas()
                        .map_err(std::io::Error::other)?
                        .header_json(self.topic.expect("checked: Avro names a topic")),
                };
                let (writer, header) = avro::ContainerWriter::start(&schema_text, self.sync);
                out.extend(header);
                avro = Some(writer);
            }
            Format::Ndjson => {}
        }
        let (mut offset, mut written) = (0u64, 0u64);
        let mut failed = None;
        for file in &self.files {
            let (from, to) = (offset, offset + file.events);
            offset = to;
            let want_from = self.start + written;
            let want_to = self.start + self.count;
            if to <= want_from || from >= want_to {
                continue;
            }
            let container = avro::Container::open(&file.path)?;
            let schema = container.schema.clone();
            let topic = file.topic.as_str();
            let decode = self.format != Format::Avro;
            container.scan(
                want_from - from,
                want_to - want_from,
                decode,
                |record, value| {
                    match (&mut avro, self.format) {
                        (Some(writer), _) => {
                            if let Some(block) = writer.append(record) {
                                out.extend(block);
                            }
                        }
                        (None, Format::Json) => {
                            if written > 0 {
                                out.push(b',');
                            }
                            json::write_record(&mut out, topic, &schema, &value);
                        }
                        (None, _) => {
                            json::write_record(&mut out, topic, &schema, &value);
                            out.push(b'\n');
                        }
                    }
                    written += 1;
                    if out.len() >= CHUNK
                        && let Err(e) = send(std::mem::take(&mut out))
                    {
                        failed = Some(e);
                        return false;
                    }
                    true
                },
            )?;
            if let Some(e) = failed.take() {
                return Err(e);
            }
            if written == self.count {
                break;
            }
        }
        if written != self.count {
            return Err(std::io::Error::other(format!(
                "the hour's files hold {written} of the {} events expected",
                self.count
            )));
        }
        match (&mut avro, self.format) {
            (Some(writer), _) => out.extend(writer.flush()),
            (None, Format::Json) => {
                out.extend_from_slice(b"],\"next_cursor\":");
                out.extend_from_slice(&serde_json::to_vec(&self.next).unwrap_or_default());
                out.extend_from_slice(b",\"has_more\":");
                out.extend_from_slice(if self.next.is_some() {
                    b"true"
                } else {
                    b"false"
                });
                out.push(b'}');
            }
            (None, _) => {}
        }
        send(out)
    }
}

/// Requires the bearer token, when one is configured.
async fn require_token(
    State(api): State<Arc<Api>>,
    request: Request,
    next: Next,
) -> Result<Response, Problem> {
    if let Some(token) = &api.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        let valid = given.is_some_and(|given| same(given.as_bytes(), token.expose().as_bytes()));
        if !valid {
            return Err(Problem::new(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "this API requires a bearer token: Authorization: Bearer <token>".into(),
                None,
            ));
        }
    }
    Ok(next.run(request).await)
}

/// Compares two byte strings in time that depends only on their lengths.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Counts requests by route and status.
async fn count_requests(State(api): State<Arc<Api>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    api.metrics
        .requests
        .with_label_values(&[route.as_str(), response.status().as_str()])
        .inc();
    response
}

/// The API's routes (`/v1/*` and `/openapi.json`), with their OpenAPI document.
pub fn router(api: Arc<Api>) -> Router {
    let (v1, mut openapi) = OpenApiRouter::new()
        .routes(routes!(list_hours))
        .routes(routes!(transactions))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&api),
            require_token,
        ))
        // The fastest level: about three times the speed of the default for a little more size,
        // which suits bulk data over a network that is rarely the bound.
        .layer(
            tower_http::compression::CompressionLayer::new()
                .quality(tower_http::CompressionLevel::Fastest),
        )
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&api),
            count_requests,
        ))
        .with_state(Arc::clone(&api))
        .split_for_parts();
    openapi.info.title = "Retail simulator pull API".into();
    openapi.info.version = env!("CARGO_PKG_VERSION").into();
    openapi.info.description = Some(
        "Each complete hour of the simulated shop's events, from the files the simulator \
         wrote: the hours and their watermark, then each hour a page at a time with cursors, \
         as NDJSON, JSON or Avro."
            .into(),
    );
    openapi.info.license = None;
    openapi.info.contact = None;
    if api.token.is_some() {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        openapi.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
    let document = openapi.to_json().unwrap_or_default();
    let openapi_route = Router::new()
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let document = document.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], document) }
            }),
        )
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&api),
            count_requests,
        ))
        .with_state(Arc::clone(&api));
    v1.merge(openapi_route)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_read_and_print_back() {
        let at = parse_hour("2026-03-02T13").unwrap();
        assert_eq!(at.to_string(), "2026-03-02T13:00:00.000Z");
        assert_eq!(hour_text(at), "2026-03-02T13");
        for bad in [
            "2026-03-02",
            "2026-03-02T24",
            "2026-02-30T01",
            "2026-3-02T01",
            "x",
        ] {
            assert_eq!(parse_hour(bad), None, "{bad}");
        }
    }

    #[test]
    fn accept_picks_the_preferred_format() {
        let with = |accept: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT, HeaderValue::from_str(accept).unwrap());
            Format::negotiate(&headers)
        };
        assert_eq!(Format::negotiate(&HeaderMap::new()), Some(Format::Ndjson));
        assert_eq!(with("application/json"), Some(Format::Json));
        assert_eq!(with("application/avro"), Some(Format::Avro));
        assert_eq!(
            with("application/json;q=0.5, application/avro"),
            Some(Format::Avro)
        );
        assert_eq!(with("*/*"), Some(Format::Ndjson));
        assert_eq!(with("text/html"), None);
        assert_eq!(with("application/json;q=0"), None);
    }

    #[test]
    fn parameters_are_checked_and_named() {
        let query = |pairs: &[(&str, &str)]| {
            parse_query(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        let parameter = |pairs: &[(&str, &str)]| query(pairs).err().unwrap().parameter;
        assert_eq!(parameter(&[]), Some("hour"));
        assert_eq!(parameter(&[("hour", "yesterday")]), Some("hour"));
        assert_eq!(
            parameter(&[("hour", "2026-03-02T13"), ("topic", "refunds")]),
            Some("topic")
        );
        assert_eq!(
            parameter(&[("hour", "2026-03-02T13"), ("limit", "0")]),
            Some("limit")
        );
        assert_eq!(
            parameter(&[("hour", "2026-03-02T13"), ("limit", "100001")]),
            Some("limit")
        );
        assert_eq!(
            parameter(&[("hour", "2026-03-02T13"), ("cursor", "abc")]),
            Some("cursor")
        );
        assert_eq!(
            parameter(&[("hour", "2026-03-02T13"), ("hour", "2026-03-02T14")]),
            Some("hour")
        );
        let ok = query(&[
            ("hour", "2026-03-02T13"),
            ("topic", "orders"),
            ("extra", "1"),
        ])
        .unwrap();
        assert_eq!((ok.topic, ok.limit), (Some(Topic::Orders), DEFAULT_LIMIT));
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"secret", b"secret"));
        assert!(!same(b"secret", b"secreT"));
        assert!(!same(b"secret", b"secret2"));
        assert!(!same(b"", b"x"));
    }

    #[test]
    fn entity_tags_match_weakly_and_differ_by_page() {
        let tag = entity_tag(&[1; 32], Some(Topic::Orders), 0, 10, Format::Json);
        assert_ne!(
            tag,
            entity_tag(&[1; 32], Some(Topic::Orders), 10, 10, Format::Json)
        );
        assert_ne!(
            tag,
            entity_tag(&[1; 32], Some(Topic::Orders), 0, 10, Format::Avro)
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&format!("\"x\", {}", tag.trim_start_matches("W/"))).unwrap(),
        );
        assert!(if_none_match(&headers, &tag));
        assert!(!if_none_match(&HeaderMap::new(), &tag));
    }
}
