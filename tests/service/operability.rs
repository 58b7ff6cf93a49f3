//! What operators and frontends see: metrics, the history and its watch stream, webhooks,
//! and request ids in the logs.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use cloudfront_lifecycle::simulator::{InjectedError, Operation};
use cloudfront_lifecycle::webhooks::WebhookSettings;
use futures::StreamExt;
use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::harness::{
    SECRET, TestApp, TestOptions, create_database, fast_worker, spawn_app, spawn_app_with,
};

const WAIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------
// Metrics

/// Parses Prometheus text exposition: every line that is not a comment must be
/// `name{labels} value` (labels optional). Returns each series with its value.
fn parse_prometheus(text: &str) -> Result<BTreeMap<String, f64>, String> {
    let mut series = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let invalid = |why: &str| format!("line {}: {why}: {line:?}", number + 1);
        let name_end = line
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .ok_or_else(|| invalid("no value"))?;
        let name = &line[..name_end];
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(invalid("invalid metric name"));
        }
        let mut rest = &line[name_end..];
        let mut key = name.to_owned();
        if rest.starts_with('{') {
            let close = label_block_end(rest).ok_or_else(|| invalid("unterminated labels"))?;
            check_labels(&rest[1..close]).map_err(|why| invalid(&why))?;
            key.push_str(&rest[..=close]);
            rest = &rest[close + 1..];
        }
        let mut fields = rest.split_whitespace();
        if !rest.starts_with(' ') {
            return Err(invalid("no space before the value"));
        }
        let value = fields.next().ok_or_else(|| invalid("no value"))?;
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            other => other
                .parse()
                .map_err(|_| invalid("value is not a number"))?,
        };
        if let Some(timestamp) = fields.next() {
            timestamp
                .parse::<i64>()
                .map_err(|_| invalid("timestamp is not an integer"))?;
        }
        if fields.next().is_some() {
            return Err(invalid("trailing text"));
        }
        series.insert(key, value);
    }
    Ok(series)
}

/// Finds the index of the `}` that closes a label block, skipping quoted values.
fn label_block_end(text: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (index, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return Some(index),
            _ => {}
        }
    }
    None
}

/// Checks `key="value",key="value"` (a trailing comma is allowed).
fn check_labels(block: &str) -> Result<(), String> {
    let mut rest = block;
    while !rest.is_empty() {
        let equals = rest.find('=').ok_or("label without =")?;
        let key = &rest[..equals];
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("invalid label name {key:?}"));
        }
        rest = rest[equals + 1..]
            .strip_prefix('"')
            .ok_or("label value not quoted")?;
        let mut end = None;
        let mut escaped = false;
        for (index, c) in rest.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => {
                    end = Some(index);
                    break;
                }
                _ => {}
            }
        }
        let end = end.ok_or("unterminated label value")?;
        rest = &rest[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    Ok(())
}

async fn scrape(app: &TestApp) -> BTreeMap<String, f64> {
    let response = app
        .client
        .get(format!("{}/metrics", app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    parse_prometheus(&text)
        .unwrap_or_else(|error| panic!("/metrics is not Prometheus text: {error}"))
}

/// Looks up a series, 0 when absent (counters and histograms appear on first use).
fn value(series: &BTreeMap<String, f64>, key: &str) -> f64 {
    series.get(key).copied().unwrap_or(0.0)
}

#[test]
fn prometheus_parser_rejects_garbage() {
    assert!(parse_prometheus("a_total{x=\"1\"} 2\n# HELP a\n").is_ok());
    assert!(parse_prometheus("a_total{x=\"1\"}2\n").is_err());
    assert!(parse_prometheus("a_total{x=1} 2\n").is_err());
    assert!(parse_prometheus("a_total not-a-number\n").is_err());
}

#[tokio::test]
async fn metrics_follow_lifecycle() {
    let app = spawn_app().await;
    let before = scrape(&app).await;

    let id = app.create("alice").await["id"].as_str().unwrap().to_owned();
    app.wait_for_status(&id, "alice", "deployed", WAIT).await;
    assert_eq!(
        app.delete(&id, "alice").await.status(),
        StatusCode::ACCEPTED
    );
    app.wait_for_status(&id, "alice", "deleted", WAIT).await;

    let after = scrape(&app).await;
    let grew = |key: &str| value(&after, key) - value(&before, key);

    // The recorder is global to the test process, so other tests add to the same counters:
    // each check is "moved by at least", never "equals".
    assert!(
        grew(
            r#"cloudfront_lifecycle_http_requests_total{method="POST",route="/v1/distributions",status="202"}"#
        ) >= 1.0
    );
    assert!(
        grew(
            r#"cloudfront_lifecycle_http_requests_total{method="DELETE",route="/v1/distributions/{id}",status="202"}"#
        ) >= 1.0
    );
    assert!(
        grew(
            r#"cloudfront_lifecycle_http_requests_total{method="GET",route="/v1/distributions/{id}",status="200"}"#
        ) >= 1.0
    );
    assert!(
        grew(
            r#"cloudfront_lifecycle_http_request_duration_seconds_count{method="POST",route="/v1/distributions"}"#
        ) >= 1.0
    );
    assert!(
        grew(
            r#"cloudfront_lifecycle_cloudfront_calls_total{operation="CreateDistributionWithTags",outcome="ok"}"#
        ) >= 1.0
    );
    assert!(
        grew(
            r#"cloudfront_lifecycle_cloudfront_calls_total{operation="DeleteDistribution",outcome="ok"}"#
        ) >= 1.0
    );
    assert!(grew("cloudfront_lifecycle_claims_total") >= 2.0);
    assert!(grew(r#"cloudfront_lifecycle_settled_total{status="deleted"}"#) >= 1.0);
    assert!(grew("cloudfront_lifecycle_deletion_duration_seconds_count") >= 1.0);
    assert!(grew("cloudfront_lifecycle_detection_lag_seconds_count") >= 1.0);
    assert!(
        after.contains_key(r#"cloudfront_lifecycle_deletion_duration_seconds_bucket{le="+Inf"}"#)
    );
    assert!(after.contains_key(r#"cloudfront_lifecycle_distributions{status="deployed"}"#));
    assert!(after.contains_key("cloudfront_lifecycle_due_rows"));
    assert!(after.contains_key("cloudfront_lifecycle_oldest_due_seconds"));

    // Routes are labelled by template, never by the raw path.
    assert!(
        after.keys().all(|key| !key.contains(&id)),
        "a series names the raw id {id}"
    );
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// History and the watch stream

#[derive(Debug)]
struct SseMessage {
    id: i64,
    event: String,
    data: Value,
}

/// Opens the watch stream and reads it until it closes or `limit` messages arrived.
/// Returns the messages and whether the server closed the stream.
async fn read_watch(
    app: &TestApp,
    id: &str,
    last_event_id: Option<i64>,
    limit: usize,
) -> (Vec<SseMessage>, bool) {
    let mut request = app.request(
        Method::GET,
        &format!("/v1/distributions/{id}/watch"),
        "alice",
    );
    if let Some(last) = last_event_id {
        request = request.header("Last-Event-ID", last.to_string());
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );

    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    let mut messages = Vec::new();
    let deadline = Instant::now() + WAIT;
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            if let Some(message) = parse_sse_block(&block) {
                messages.push(message);
                if messages.len() == limit {
                    return (messages, false);
                }
            }
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, stream.next()).await {
            Ok(Some(chunk)) => buffer.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap()),
            Ok(None) => return (messages, true),
            Err(_) => panic!(
                "the watch stream of {id} neither closed nor sent {limit} events within {WAIT:?}; got {messages:?}"
            ),
        }
    }
}

/// Parses one SSE block; keep-alive comments yield nothing.
fn parse_sse_block(block: &str) -> Option<SseMessage> {
    let mut id = None;
    let mut event = String::new();
    let mut data = String::new();
    for line in block.lines() {
        if let Some(value) = line.strip_prefix("id:") {
            id = Some(value.trim().parse().unwrap());
        } else if let Some(value) = line.strip_prefix("event:") {
            event = value.trim().to_owned();
        } else if let Some(value) = line.strip_prefix("data:") {
            data.push_str(value.trim_start());
        }
    }
    Some(SseMessage {
        id: id?,
        event,
        data: serde_json::from_str(&data).unwrap(),
    })
}

async fn history(app: &TestApp, id: &str) -> Vec<Value> {
    let response = app
        .request(
            Method::GET,
            &format!("/v1/distributions/{id}/events"),
            "alice",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn watch_streams_delete_to_end() {
    let app = spawn_app().await;
    let id = app.create("alice").await["id"].as_str().unwrap().to_owned();
    app.wait_for_status(&id, "alice", "deployed", WAIT).await;
    assert_eq!(
        app.delete(&id, "alice").await.status(),
        StatusCode::ACCEPTED
    );

    let (messages, closed) = read_watch(&app, &id, None, usize::MAX).await;
    assert!(closed, "the stream stayed open after the last event");

    let recorded = history(&app, &id).await;
    let streamed_ids: Vec<i64> = messages.iter().map(|message| message.id).collect();
    let recorded_ids: Vec<i64> = recorded
        .iter()
        .map(|event| event["id"].as_i64().unwrap())
        .collect();
    assert_eq!(streamed_ids, recorded_ids);
    assert!(messages.iter().all(|message| message.event == "transition"));

    let statuses: Vec<&str> = messages
        .iter()
        .map(|message| message.data["event"]["to_status"].as_str().unwrap())
        .collect();
    let position = |status: &str| statuses.iter().position(|seen| *seen == status);
    assert!(
        position("deployed") < position("disabling"),
        "order: {statuses:?}"
    );
    assert!(
        position("disabling") < position("deleting"),
        "order: {statuses:?}"
    );
    assert_eq!(statuses.last(), Some(&"deleted"));
    assert_eq!(messages.last().unwrap().data["status"], "deleted");
    app.stop().await;
}

#[tokio::test]
async fn watch_resumes_without_gaps() {
    let app = spawn_app().await;
    let id = app.create("alice").await["id"].as_str().unwrap().to_owned();

    // Read the first two events live, then drop the connection.
    let (first, closed) = read_watch(&app, &id, None, 2).await;
    assert!(!closed);
    let last_seen = first.last().unwrap().id;

    app.wait_for_status(&id, "alice", "deployed", WAIT).await;
    assert_eq!(
        app.delete(&id, "alice").await.status(),
        StatusCode::ACCEPTED
    );
    let (rest, closed) = read_watch(&app, &id, Some(last_seen), usize::MAX).await;
    assert!(closed);

    let streamed: Vec<i64> = first
        .iter()
        .chain(&rest)
        .map(|message| message.id)
        .collect();
    let recorded: Vec<i64> = history(&app, &id)
        .await
        .iter()
        .map(|event| event["id"].as_i64().unwrap())
        .collect();
    assert_eq!(streamed, recorded);
    app.stop().await;
}

#[tokio::test]
async fn history_is_owner_scoped() {
    let app = spawn_app_with(TestOptions {
        worker: None,
        ..TestOptions::default()
    })
    .await;
    let id = app.create("alice").await["id"].as_str().unwrap().to_owned();

    for path in ["events", "watch"] {
        let response = app
            .request(
                Method::GET,
                &format!("/v1/distributions/{id}/{path}"),
                "mallory",
            )
            .send()
            .await
            .unwrap();
        crate::harness::assert_problem(response, StatusCode::NOT_FOUND, "not-found").await;
    }
    let response = app
        .request(
            Method::GET,
            &format!("/v1/distributions/{id}/watch"),
            "alice",
        )
        .header("Last-Event-ID", "yesterday")
        .send()
        .await
        .unwrap();
    crate::harness::assert_problem(response, StatusCode::BAD_REQUEST, "invalid-parameter").await;
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// Webhooks

const WEBHOOK_SECRET: &str = "webhook-secret-for-tests-0123456789abcdef";

/// Answers 503 to the first `failures` requests, then 204, and keeps what it accepted.
#[derive(Clone, Default)]
struct Receiver {
    failures: usize,
    requests: Arc<Mutex<usize>>,
    accepted: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> AxumStatus {
    let mut requests = receiver.requests.lock().unwrap();
    *requests += 1;
    if *requests <= receiver.failures {
        return AxumStatus::SERVICE_UNAVAILABLE;
    }
    receiver.accepted.lock().unwrap().push((headers, body));
    AxumStatus::NO_CONTENT
}

async fn start_receiver(failures: usize) -> (Receiver, String) {
    let receiver = Receiver {
        failures,
        ..Receiver::default()
    };
    let router = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (receiver, url)
}

fn signature_is_valid(headers: &HeaderMap, body: &[u8]) -> bool {
    let header = headers["webhook-signature"].to_str().unwrap();
    let mut timestamp = "";
    let mut signature = "";
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => timestamp = value,
            Some(("v1", value)) => signature = value,
            _ => {}
        }
    }
    let age = chrono::Utc::now().timestamp() - timestamp.parse::<i64>().unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    age.abs() <= 300 && mac.verify_slice(&hex::decode(signature).unwrap()).is_ok()
}

#[tokio::test]
async fn webhooks_survive_receiver_outage() {
    let (receiver, url) = start_receiver(3).await;
    let mut webhooks = WebhookSettings::new(url.parse().unwrap(), WEBHOOK_SECRET.parse().unwrap());
    webhooks.backoff_first = Duration::from_millis(100);
    webhooks.backoff_max = Duration::from_millis(400);
    webhooks.poll_interval = Duration::from_millis(500);
    webhooks.timeout = Duration::from_secs(5);
    let app = spawn_app_with(TestOptions {
        // Every deletion is past its deadline at once, so an overdue notification is sent too.
        worker: Some(cloudfront_lifecycle::worker::WorkerSettings {
            deletion_deadline: Duration::ZERO,
            ..fast_worker()
        }),
        webhooks: Some(webhooks),
        ..TestOptions::default()
    })
    .await;

    let id = app.create("alice").await["id"].as_str().unwrap().to_owned();
    app.wait_for_status(&id, "alice", "deployed", WAIT).await;
    assert_eq!(
        app.delete(&id, "alice").await.status(),
        StatusCode::ACCEPTED
    );
    app.wait_for_status(&id, "alice", "deleted", WAIT).await;

    // Wait until the outbox shows every notification delivered.
    let deadline = Instant::now() + WAIT;
    loop {
        let pending = app
            .count("select count(*) from webhook_deliveries where delivered_at is null")
            .await;
        if pending == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{pending} notifications still undelivered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let accepted = receiver.accepted.lock().unwrap().clone();
    let mut types = Vec::new();
    let mut per_id: HashMap<String, usize> = HashMap::new();
    for (headers, body) in &accepted {
        assert!(
            signature_is_valid(headers, body),
            "bad signature on {body:?}"
        );
        let payload: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(headers["webhook-id"].to_str().unwrap(), payload["id"]);
        assert_eq!(payload["distribution"]["id"], id.as_str());
        *per_id
            .entry(payload["id"].as_str().unwrap().to_owned())
            .or_default() += 1;
        types.push(payload["type"].as_str().unwrap().to_owned());
    }
    types.sort();
    assert_eq!(
        types,
        [
            "distribution.deleted",
            "distribution.deployed",
            "distribution.overdue"
        ]
    );
    assert!(
        per_id.values().all(|count| *count == 1),
        "duplicates: {per_id:?}"
    );
    assert!(*receiver.requests.lock().unwrap() >= 3 + accepted.len());
    let retried = app
        .count("select count(*) from webhook_deliveries where attempts > 1")
        .await;
    assert!(retried >= 1);
    app.stop().await;
}

#[tokio::test]
async fn failed_distribution_notifies() {
    let (receiver, url) = start_receiver(0).await;
    let mut webhooks = WebhookSettings::new(url.parse().unwrap(), WEBHOOK_SECRET.parse().unwrap());
    webhooks.poll_interval = Duration::from_millis(500);
    let app = spawn_app_with(TestOptions {
        webhooks: Some(webhooks),
        ..TestOptions::default()
    })
    .await;

    // CloudFront rejects the create with an error no retry can fix, so the row fails.
    app.simulator().inject_error(InjectedError {
        operation: Some(Operation::CreateDistributionWithTags),
        count: 1,
        status: 403,
        code: "AccessDenied".to_owned(),
        message: "not allowed".to_owned(),
    });
    let id = app.create("alice").await["id"].as_str().unwrap().to_owned();
    let failed = app.wait_for_status(&id, "alice", "failed", WAIT).await;
    assert_eq!(failed["last_error"]["code"], "AccessDenied");

    let deadline = Instant::now() + WAIT;
    loop {
        let types: Vec<String> = receiver
            .accepted
            .lock()
            .unwrap()
            .iter()
            .map(|(_, body)| {
                serde_json::from_slice::<Value>(body).unwrap()["type"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        if types.iter().any(|kind| kind == "distribution.failed") {
            let accepted = receiver.accepted.lock().unwrap().clone();
            let payload: Value = serde_json::from_slice(&accepted[0].1).unwrap();
            assert_eq!(
                payload["distribution"]["last_error"]["code"],
                "AccessDenied"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no failed notification; got {types:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// Request ids in the logs

/// The service binary as a child process, killed when dropped.
struct ChildService(Child);

impl Drop for ChildService {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn request_id_in_json_logs() {
    let database_url = create_database().await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_cloudfront-lifecycle"))
        .arg("serve")
        .env("DATABASE_URL", &database_url)
        .env("AUTH_JWT_SECRET", SECRET)
        .env("BIND_ADDR", "127.0.0.1:0")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .env("CLOUDFRONT_BACKEND", "simulator")
        .env("SIMULATOR_DEPLOY_SECONDS", "0.3")
        .env_remove("WEBHOOK_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the service binary starts");
    let stderr = child.stderr.take().unwrap();
    let _child = ChildService(child);

    let lines: Arc<Mutex<Vec<Value>>> = Arc::default();
    let collected = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Ok(value) = serde_json::from_str::<Value>(&line) {
                collected.lock().unwrap().push(value);
            }
        }
    });

    let address = wait_for_line(&lines, |line| line["message"] == "API listening").await["address"]
        .as_str()
        .unwrap()
        .to_owned();
    let client = reqwest::Client::new();
    let token =
        cloudfront_lifecycle::api::auth::issue_token(SECRET.as_bytes(), "alice", 600).unwrap();
    let response = client
        .post(format!("http://{address}/v1/distributions"))
        .bearer_auth(&token)
        .header("X-Request-Id", "test-123")
        .json(&json!({"origin": {"domain_name": "origin.example.com"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(response.headers()["x-request-id"], "test-123");
    let generated = client
        .get(format!("http://{address}/healthz"))
        .send()
        .await
        .unwrap();
    assert!(generated.headers().contains_key("x-request-id"));

    // The handler's own line and the per-request line both carry the id and the owner.
    let created = wait_for_line(&lines, |line| line["message"] == "creation requested").await;
    assert_eq!(created["span"]["request_id"], "test-123");
    assert_eq!(created["span"]["owner"], "alice");
    let finished = wait_for_line(&lines, |line| {
        line["message"] == "finished processing request" && line["span"]["request_id"] == "test-123"
    })
    .await;
    assert!(
        finished["spans"]
            .as_array()
            .is_some_and(|spans| !spans.is_empty())
    );
}

async fn wait_for_line(lines: &Arc<Mutex<Vec<Value>>>, matches: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(line) = lines.lock().unwrap().iter().find(|line| matches(line)) {
            return line.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no such log line within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
