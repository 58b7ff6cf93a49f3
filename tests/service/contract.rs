//! The API contract beyond the happy path: token verification (HS256 and JWKS), tenant
//! isolation on every route with an id, per-owner rate limits, security headers, the body
//! limit and the request timeout, and the derived parts of the OpenAPI document.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cloudfront_lifecycle::api::HttpSettings;
use cloudfront_lifecycle::api::auth::AuthSettings;
use cloudfront_lifecycle::api::auth::jwks::JwksLocation;
use cloudfront_lifecycle::api::error::ProblemType;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{SECRET, TestApp, TestOptions, assert_problem, spawn_app_with};

const ISSUER: &str = "https://issuer.test";
const AUDIENCE: &str = "cloudfront-lifecycle";

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|error| panic!("reading {path} failed: {error}"))
}

/// A signing key from the fixtures, with the kid it is published under.
struct TestKey {
    kid: &'static str,
    algorithm: Algorithm,
    key: EncodingKey,
}

fn rsa_a() -> TestKey {
    TestKey {
        kid: "rsa-a",
        algorithm: Algorithm::RS256,
        key: EncodingKey::from_rsa_pem(&fixture("test-only-rsa-a.pem")).unwrap(),
    }
}

fn rsa_b() -> TestKey {
    TestKey {
        kid: "rsa-b",
        algorithm: Algorithm::RS256,
        key: EncodingKey::from_rsa_pem(&fixture("test-only-rsa-b.pem")).unwrap(),
    }
}

fn ec_a() -> TestKey {
    TestKey {
        kid: "ec-a",
        algorithm: Algorithm::ES256,
        key: EncodingKey::from_ec_pem(&fixture("test-only-ec-p256.pem")).unwrap(),
    }
}

/// Builds the public JWKS document for `keys`.
fn jwks(keys: &[TestKey]) -> Value {
    let keys: Vec<Value> = keys
        .iter()
        .map(|key| {
            let mut jwk = Jwk::from_encoding_key(&key.key, key.algorithm).unwrap();
            jwk.common.key_id = Some(key.kid.to_owned());
            serde_json::to_value(jwk).unwrap()
        })
        .collect();
    json!({ "keys": keys })
}

fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

/// Claims that pass every check of `jwks_auth`, for `owner`.
fn good_claims(owner: &str) -> Value {
    json!({ "sub": owner, "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 600, "iat": now() })
}

/// Signs `claims` with `key`, naming `kid` in the header.
fn sign_with(key: &TestKey, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(key.algorithm);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &key.key).unwrap()
}

fn sign(key: &TestKey, claims: &Value) -> String {
    sign_with(key, key.kid, claims)
}

/// Signs an HS256 token by hand with any bytes as the secret (jsonwebtoken would not take an
/// RSA public key as an HMAC secret).
fn sign_hs256_raw(secret: &[u8], kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap()
}

/// Builds a token whose header declares `alg: none`, with an empty signature.
fn unsigned(claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT","kid":"rsa-a"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{payload}.")
}

/// A JWKS file of the test's own, removed when dropped.
struct JwksFile {
    path: PathBuf,
}

impl JwksFile {
    fn new(document: &Value) -> JwksFile {
        let path = std::env::temp_dir().join(format!("cfl-jwks-{}.json", uuid::Uuid::new_v4()));
        let file = JwksFile { path };
        file.write(document);
        file
    }

    /// Replaces the file atomically, as a deployment tool would.
    fn write(&self, document: &Value) {
        let staging = self.path.with_extension("tmp");
        std::fs::write(&staging, document.to_string()).unwrap();
        std::fs::rename(&staging, &self.path).unwrap();
    }
}

impl Drop for JwksFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Auth settings for RS256 and ES256 only, with issuer and audience checks.
fn jwks_auth(location: JwksLocation) -> AuthSettings {
    AuthSettings {
        hs256_secret: None,
        jwks: Some(location),
        issuer: Some(ISSUER.to_owned()),
        audience: Some(AUDIENCE.to_owned()),
        ..AuthSettings::hs256(b"")
    }
}

async fn spawn_with_auth(auth: AuthSettings) -> TestApp {
    spawn_app_with(TestOptions {
        auth,
        worker: None,
        ..TestOptions::default()
    })
    .await
}

async fn list_with(app: &TestApp, token: &str) -> Response {
    app.client
        .get(format!("{}/v1/distributions", app.base_url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn token_matrix() {
    let file = JwksFile::new(&jwks(&[rsa_a(), ec_a()]));
    let app = spawn_with_auth(jwks_auth(JwksLocation::File(file.path.clone()))).await;

    let mut expired = good_claims("alice");
    expired["exp"] = json!(now() - 3600);
    let mut not_yet_valid = good_claims("alice");
    not_yet_valid["nbf"] = json!(now() + 3600);
    let mut wrong_issuer = good_claims("alice");
    wrong_issuer["iss"] = json!("https://someone-else.test");
    let mut wrong_audience = good_claims("alice");
    wrong_audience["aud"] = json!("another-service");
    let mut no_audience = good_claims("alice");
    no_audience.as_object_mut().unwrap().remove("aud");
    let mut empty_subject = good_claims("alice");
    empty_subject["sub"] = json!("");
    let rsa_public_pem = fixture("test-only-rsa-a.pub.pem");

    let rejected = [
        ("expired", sign(&rsa_a(), &expired)),
        ("nbf in the future", sign(&rsa_a(), &not_yet_valid)),
        ("wrong issuer", sign(&rsa_a(), &wrong_issuer)),
        ("wrong audience", sign(&rsa_a(), &wrong_audience)),
        ("missing audience", sign(&rsa_a(), &no_audience)),
        ("empty subject", sign(&rsa_a(), &empty_subject)),
        (
            "wrong key",
            sign_with(&rsa_b(), "rsa-a", &good_claims("alice")),
        ),
        ("alg none", unsigned(&good_claims("alice"))),
        (
            "HS256 with the shared secret",
            sign_hs256_raw(SECRET.as_bytes(), None, &good_claims("alice")),
        ),
        (
            "HS256 forged with the RSA public key",
            sign_hs256_raw(&rsa_public_pem, Some("rsa-a"), &good_claims("alice")),
        ),
        (
            "kid not in the JWKS",
            sign_with(&rsa_a(), "unknown-kid", &good_claims("alice")),
        ),
        (
            "RS256 naming an EC key",
            sign_with(&rsa_a(), "ec-a", &good_claims("alice")),
        ),
        (
            "ES256 naming an RSA key",
            sign_with(&ec_a(), "rsa-a", &good_claims("alice")),
        ),
    ];
    for (case, token) in rejected {
        let response = list_with(&app, &token).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "case: {case}");
        assert_problem(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }

    // Expired ten seconds ago is inside the default 30-second leeway.
    let mut recently_expired = good_claims("alice");
    recently_expired["exp"] = json!(now() - 10);
    let accepted = [
        ("RS256", sign(&rsa_a(), &good_claims("alice"))),
        ("ES256", sign(&ec_a(), &good_claims("alice"))),
        ("expired within leeway", sign(&rsa_a(), &recently_expired)),
    ];
    for (case, token) in accepted {
        let response = list_with(&app, &token).await;
        assert_eq!(response.status(), StatusCode::OK, "case: {case}");
    }
    app.stop().await;
}

#[tokio::test]
async fn hs256_and_jwks_together() {
    let file = JwksFile::new(&jwks(&[rsa_a()]));
    let app = spawn_with_auth(AuthSettings {
        hs256_secret: Some(SECRET.as_bytes().to_vec()),
        ..jwks_auth(JwksLocation::File(file.path.clone()))
    })
    .await;

    // Issuer and audience checks apply to HS256 tokens as well.
    let hs256 = sign_hs256_raw(SECRET.as_bytes(), None, &good_claims("alice"));
    let response = list_with(&app, &hs256).await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = list_with(&app, &app.token("alice")).await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let response = list_with(&app, &sign(&rsa_a(), &good_claims("alice"))).await;
    assert_eq!(response.status(), StatusCode::OK);

    // The RSA public key is never an HMAC secret, even when HS256 is enabled.
    let forged = sign_hs256_raw(
        &fixture("test-only-rsa-a.pub.pem"),
        Some("rsa-a"),
        &good_claims("alice"),
    );
    let response = list_with(&app, &forged).await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    app.stop().await;
}

#[tokio::test]
async fn jwks_file_rotation_picked_up() {
    let file = JwksFile::new(&jwks(&[rsa_a()]));
    let app = spawn_with_auth(jwks_auth(JwksLocation::File(file.path.clone()))).await;

    file.write(&jwks(&[rsa_a(), rsa_b()]));
    let response = list_with(&app, &sign(&rsa_b(), &good_claims("alice"))).await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = list_with(&app, &sign(&rsa_a(), &good_claims("alice"))).await;
    assert_eq!(response.status(), StatusCode::OK);
    app.stop().await;
}

/// A JWKS served over HTTP on a loopback port, counting the fetches.
struct JwksServer {
    url: String,
    document: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    async fn start(document: Value) -> JwksServer {
        let document = Arc::new(Mutex::new(document));
        let fetches = Arc::new(AtomicUsize::new(0));
        let served = document.clone();
        let counter = fetches.clone();
        let router = axum::Router::new().route(
            "/jwks.json",
            axum::routing::get(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                let body = served.lock().unwrap().clone();
                async move { axum::Json(body) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        JwksServer {
            url,
            document,
            fetches,
            task,
        }
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn jwks_url_reload_is_rate_limited() {
    let server = JwksServer::start(jwks(&[rsa_a()])).await;
    let app = spawn_with_auth(jwks_auth(server.url.parse().unwrap())).await;
    assert_eq!(server.fetches(), 1);

    // Rotation: the first unknown kid reloads the set and finds the new key.
    *server.document.lock().unwrap() = jwks(&[rsa_a(), rsa_b()]);
    let response = list_with(&app, &sign(&rsa_b(), &good_claims("alice"))).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(server.fetches(), 2);

    // A flood of made-up kids within the reload interval causes no further fetch.
    for attempt in 0..20 {
        let token = sign_with(&rsa_a(), &format!("bogus-{attempt}"), &good_claims("alice"));
        let response = list_with(&app, &token).await;
        assert_problem(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }
    assert_eq!(server.fetches(), 2);
    app.stop().await;
}

#[tokio::test]
async fn owner_claim_is_configurable() {
    let file = JwksFile::new(&jwks(&[rsa_a()]));
    let app = spawn_with_auth(AuthSettings {
        owner_claim: "tenant".to_owned(),
        ..jwks_auth(JwksLocation::File(file.path.clone()))
    })
    .await;

    let mut claims = good_claims("alice");
    claims["tenant"] = json!("acme");
    let response = list_with(&app, &sign(&rsa_a(), &claims)).await;
    assert_eq!(response.status(), StatusCode::OK);

    let response = list_with(&app, &sign(&rsa_a(), &good_claims("alice"))).await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    app.stop().await;
}

#[tokio::test]
async fn start_without_auth_fails() {
    let auth = AuthSettings {
        hs256_secret: None,
        jwks: None,
        ..AuthSettings::hs256(b"")
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let settings = cloudfront_lifecycle::app::ServiceSettings {
        database_url: "postgres://unused@127.0.0.1:1/unused".to_owned(),
        database_max_connections: 1,
        migrate: false,
        auth: Some(auth),
        cloudfront: cloudfront_lifecycle::app::CloudFrontTarget::EmbeddedSimulator {
            deploy_time: Duration::from_millis(100),
        },
        calls: TestOptions::default().calls,
        http: HttpSettings::default(),
        worker: Default::default(),
        run_api: true,
        run_worker: false,
        webhooks: None,
    };
    let error = match cloudfront_lifecycle::app::start(settings, Some(listener)).await {
        Ok(_) => panic!("the service started without any token verification"),
        Err(error) => error.to_string(),
    };
    assert!(error.contains("AUTH_JWT_SECRET"), "error: {error}");
    assert!(error.contains("AUTH_JWKS"), "error: {error}");
}

/// Lists every operation in the OpenAPI document whose path has an `{id}`, as (method, path).
fn id_routes() -> Vec<(Method, String)> {
    let document = serde_json::to_value(cloudfront_lifecycle::api::openapi()).unwrap();
    let mut routes = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        if !path.contains("{id}") {
            continue;
        }
        for method in item.as_object().unwrap().keys() {
            if let Ok(method) = method.to_uppercase().parse::<Method>() {
                routes.push((method, path.clone()));
            }
        }
    }
    routes
}

#[tokio::test]
async fn foreign_id_looks_unknown() {
    let app = spawn_app_with(TestOptions::default()).await;
    let created = app.create("alice").await;
    let id = created["id"].as_str().unwrap().to_owned();
    let unknown = uuid::Uuid::now_v7().to_string();
    let routes = id_routes();
    assert!(routes.len() >= 2, "routes: {routes:?}");

    for (method, path) in &routes {
        let mut answers = Vec::new();
        for target in [&id, &unknown] {
            let mut request = app.request(method.clone(), &path.replace("{id}", target), "mallory");
            if *method == Method::PATCH {
                request = request.json(&json!({"comment": "mallory was here"}));
            } else if *method == Method::POST || *method == Method::PUT {
                request = request.json(&json!({}));
            }
            let response = request.send().await.unwrap();
            let status = response.status();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            answers.push((status, body["type"].clone()));
        }
        assert_eq!(answers[0].0, answers[1].0, "status of {method} {path}");
        assert_eq!(
            answers[0].1, answers[1].1,
            "problem type of {method} {path}"
        );
        assert!(
            answers[0].0.is_client_error(),
            "{method} {path} answered {}",
            answers[0].0
        );
    }

    // Alice's distribution is untouched by every request above.
    let intent: String = sqlx::query_scalar("select intent from distributions where id = $1::uuid")
        .bind(&id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(intent, "keep");
    let response = app.get(&id, "alice").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["config"]["comment"], created["config"]["comment"]);
    assert_eq!(body["config"]["comment"], "test");
    app.stop().await;
}

async fn listed_ids(app: &TestApp, owner: &str) -> Vec<String> {
    let response = app
        .request(Method::GET, "/v1/distributions?limit=100", owner)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let page: Value = response.json().await.unwrap();
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn list_shows_own_rows_only() {
    let app = spawn_app_with(TestOptions {
        worker: None,
        ..TestOptions::default()
    })
    .await;
    let alice_first = app.create("alice").await["id"].as_str().unwrap().to_owned();
    let alice_second = app.create("alice").await["id"].as_str().unwrap().to_owned();
    let bob = app.create("bob").await["id"].as_str().unwrap().to_owned();

    let mut alice_sees = listed_ids(&app, "alice").await;
    alice_sees.sort();
    let mut alice_expected = vec![alice_first, alice_second];
    alice_expected.sort();
    assert_eq!(alice_sees, alice_expected);
    assert_eq!(listed_ids(&app, "bob").await, vec![bob]);
    assert!(listed_ids(&app, "mallory").await.is_empty());
    app.stop().await;
}

fn limited_http(per_second: u32, burst: u32) -> HttpSettings {
    HttpSettings {
        rate_limit_per_second: per_second,
        rate_limit_burst: burst,
        ..HttpSettings::default()
    }
}

#[tokio::test]
async fn rate_limit_is_per_owner() {
    let app = spawn_app_with(TestOptions {
        worker: None,
        http: limited_http(1, 3),
        ..TestOptions::default()
    })
    .await;

    for attempt in 0..3 {
        let response = app
            .request(Method::GET, "/v1/distributions", "alice")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "request {attempt}");
    }
    let response = app
        .request(Method::GET, "/v1/distributions", "alice")
        .send()
        .await
        .unwrap();
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .expect("a 429 carries Retry-After")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1, "Retry-After: {retry_after}");
    assert_problem(response, StatusCode::TOO_MANY_REQUESTS, "rate-limited").await;

    let response = app
        .request(Method::GET, "/v1/distributions", "bob")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    app.stop().await;
}

fn assert_security_headers(response: &Response, case: &str) {
    let headers = response.headers();
    let expected = [
        ("x-content-type-options", "nosniff"),
        ("cache-control", "no-store"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        (
            "content-security-policy",
            "default-src 'none'; frame-ancestors 'none'",
        ),
    ];
    for (name, value) in expected {
        assert_eq!(
            headers.get(name).and_then(|value| value.to_str().ok()),
            Some(value),
            "{name} on {case}"
        );
    }
    assert!(
        headers.get("strict-transport-security").is_none(),
        "HSTS is off unless configured ({case})"
    );
}

#[tokio::test]
async fn security_headers_everywhere() {
    let app = spawn_app_with(TestOptions {
        worker: None,
        ..TestOptions::default()
    })
    .await;

    let success = app
        .request(Method::GET, "/v1/distributions", "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(success.status(), StatusCode::OK);
    assert_security_headers(&success, "a success");

    let error = app
        .client
        .get(format!("{}/v1/distributions", app.base_url))
        .send()
        .await
        .unwrap();
    assert_security_headers(&error, "a 401");
    assert_problem(error, StatusCode::UNAUTHORIZED, "unauthorized").await;

    let missing = app
        .client
        .get(format!("{}/no-such-route", app.base_url))
        .send()
        .await
        .unwrap();
    assert_security_headers(&missing, "a 404");
    assert_problem(missing, StatusCode::NOT_FOUND, "not-found").await;
    app.stop().await;
}

#[tokio::test]
async fn hsts_only_when_configured() {
    let app = spawn_app_with(TestOptions {
        worker: None,
        http: HttpSettings {
            hsts_max_age_seconds: 31_536_000,
            ..limited_http(0, 0)
        },
        ..TestOptions::default()
    })
    .await;
    let response = app
        .client
        .get(format!("{}/healthz", app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers().get("strict-transport-security").unwrap(),
        "max-age=31536000; includeSubDomains"
    );
    app.stop().await;
}

#[tokio::test]
async fn docs_page_renders() {
    let app = spawn_app_with(TestOptions {
        worker: None,
        ..TestOptions::default()
    })
    .await;
    let page = app
        .client
        .get(format!("{}/docs/", app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(policy.contains("script-src 'self'"), "policy: {policy}");
    assert!(
        policy.contains("frame-ancestors 'none'"),
        "policy: {policy}"
    );
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui-bundle.js"), "page: {html}");

    let initializer = app
        .client
        .get(format!("{}/docs/swagger-initializer.js", app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(initializer.status(), StatusCode::OK);
    let script = initializer.text().await.unwrap();
    assert!(script.contains("\"/openapi.json\""), "script: {script}");
    app.stop().await;
}

#[tokio::test]
async fn oversized_body_is_413() {
    let app = spawn_app_with(TestOptions {
        worker: None,
        http: HttpSettings {
            body_limit_bytes: 1024,
            ..limited_http(0, 0)
        },
        ..TestOptions::default()
    })
    .await;
    let body = json!({
        "origin": {"domain_name": "origin.example.com"},
        "comment": "x".repeat(4096),
    });
    let response = app
        .request(Method::POST, "/v1/distributions", "alice")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large").await;
    app.stop().await;
}

#[tokio::test]
async fn stalled_body_is_408() {
    let app = spawn_app_with(TestOptions {
        worker: None,
        http: HttpSettings {
            request_timeout: Duration::from_millis(300),
            ..limited_http(0, 0)
        },
        ..TestOptions::default()
    })
    .await;

    // The client promises 100 bytes, sends 10 and waits, so the handler never completes.
    let address = app.base_url.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "POST /v1/distributions HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"origin\":",
        app.token("alice")
    );
    stream.write_all(head.as_bytes()).await.unwrap();

    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let count = stream.read(&mut buffer).await.unwrap();
            answer.extend_from_slice(&buffer[..count]);
            let text = String::from_utf8_lossy(&answer);
            if count == 0 || text.contains("urn:cloudfront-lifecycle:problem:") {
                break;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer within 10 s");
    let text = String::from_utf8_lossy(&answer).to_string();
    assert!(text.starts_with("HTTP/1.1 408"), "answer: {text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        "answer: {text}"
    );
    assert!(
        text.contains("urn:cloudfront-lifecycle:problem:request-timeout"),
        "answer: {text}"
    );
    app.stop().await;
}

#[test]
fn document_lists_problem_types() {
    let document = serde_json::to_value(cloudfront_lifecycle::api::openapi()).unwrap();
    let listed = document["x-problem-types"].as_array().unwrap();
    assert_eq!(listed.len(), ProblemType::ALL.len());
    for kind in ProblemType::ALL {
        let entry = listed
            .iter()
            .find(|entry| entry["type"] == kind.uri())
            .unwrap_or_else(|| panic!("{} is not listed", kind.uri()));
        assert_eq!(entry["status"], kind.status().as_u16());
        assert_eq!(entry["title"], kind.title());
    }
}

#[test]
fn create_links_to_item_operations() {
    let document = serde_json::to_value(cloudfront_lifecycle::api::openapi()).unwrap();
    let links = &document["paths"]["/v1/distributions"]["post"]["responses"]["202"]["links"];
    for (method, path) in id_routes() {
        let operation = &document["paths"][&path][method.as_str().to_lowercase()];
        let operation_id = operation["operationId"].as_str().unwrap();
        let link = &links[operation_id];
        assert_eq!(link["operationId"], operation_id, "link to {method} {path}");
        assert_eq!(
            link["parameters"]["id"], "$response.body#/id",
            "link to {method} {path}"
        );
    }
}

#[test]
fn authenticated_operations_document_429() {
    let document = serde_json::to_value(cloudfront_lifecycle::api::openapi()).unwrap();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if operation.get("security").is_none() {
                continue;
            }
            assert!(
                operation["responses"].get("429").is_some(),
                "{method} {path} does not document 429"
            );
        }
    }
}
