//! Starts a real service for a test: its own Postgres database (created from
//! TEST_DATABASE_URL), the API on port 0, the worker, and a CloudFront peer.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cloudfront_lifecycle::api::HttpSettings;
use cloudfront_lifecycle::api::auth::{AuthSettings, issue_token};
use cloudfront_lifecycle::app::{self, CloudFrontTarget, RunningService, ServiceSettings};
use cloudfront_lifecycle::cloudfront::CallSettings;
use cloudfront_lifecycle::lifecycle::schedule::{Delays, RecheckSchedule};
use cloudfront_lifecycle::simulator::Simulator;
use cloudfront_lifecycle::store::rate_limit::{BucketLimit, RateLimitSettings};
use cloudfront_lifecycle::webhooks::WebhookSettings;
use cloudfront_lifecycle::worker::WorkerSettings;
use reqwest::{Client, Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

pub const SECRET: &str = "test-secret-that-is-long-enough-for-hs256-0123456789";

/// Worker settings that make a test's lifecycle finish in well under a second of waiting.
pub fn fast_worker() -> WorkerSettings {
    WorkerSettings {
        concurrency: 8,
        lease: Duration::from_secs(30),
        safety_interval: Duration::from_millis(500),
        schedule: RecheckSchedule::Backoff {
            first: Duration::from_millis(100),
            factor: 1.5,
            max: Duration::from_millis(500),
        },
        delays: Delays {
            confirm: Duration::from_millis(200),
            backoff_first: Duration::from_millis(100),
            backoff_max: Duration::from_millis(500),
            throttled: Duration::from_millis(200),
        },
        // Far above what a test sends, so only the scale tests feel the shared rate limit.
        rate_limits: RateLimitSettings {
            mutating: BucketLimit {
                rate_per_second: 500.0,
                burst: 500.0,
            },
            read: BucketLimit {
                rate_per_second: 1000.0,
                burst: 1000.0,
            },
            ..RateLimitSettings::default()
        },
        ..WorkerSettings::default()
    }
}

pub struct TestOptions {
    pub cloudfront: CloudFrontTarget,
    pub worker: Option<WorkerSettings>,
    pub calls: CallSettings,
    pub auth: AuthSettings,
    pub http: HttpSettings,
    pub webhooks: Option<WebhookSettings>,
}

impl Default for TestOptions {
    fn default() -> Self {
        TestOptions {
            cloudfront: CloudFrontTarget::EmbeddedSimulator {
                deploy_time: Duration::from_millis(300),
            },
            worker: Some(fast_worker()),
            calls: CallSettings {
                max_attempts: 1,
                attempt_timeout: Duration::from_secs(5),
                call_timeout: Duration::from_secs(10),
            },
            auth: AuthSettings::hs256(SECRET.as_bytes()),
            // Tests poll quickly, so the per-owner rate limit is off unless a test sets one.
            http: HttpSettings {
                rate_limit_per_second: 0,
                // Several tests create more distributions for one owner than the default allows.
                limits: cloudfront_lifecycle::api::ApiLimits {
                    max_distributions_per_owner: 100_000,
                    ..Default::default()
                },
                ..HttpSettings::default()
            },
            webhooks: None,
        }
    }
}

pub struct TestApp {
    pub base_url: String,
    pub client: Client,
    pub pool: PgPool,
    pub simulator: Option<Simulator>,
    pub simulator_endpoint: Option<String>,
    pub service: Option<RunningService>,
}

/// Creates an empty database of the test's own and returns its URL.
pub async fn create_database() -> String {
    let admin_url = std::env::var("TEST_DATABASE_URL").expect(
        "TEST_DATABASE_URL is not set: run the suite with scripts/test.sh, which starts a throwaway Postgres",
    );
    let name = format!("test_{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&admin_url)
        .await
        .expect("connecting to TEST_DATABASE_URL failed");
    sqlx::query(&format!("create database {name}"))
        .execute(&mut admin)
        .await
        .expect("creating the test database failed");
    let (base, _) = admin_url
        .rsplit_once('/')
        .expect("TEST_DATABASE_URL has a database name");
    format!("{base}/{name}")
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(TestOptions::default()).await
}

pub async fn spawn_app_with(options: TestOptions) -> TestApp {
    let database_url = create_database().await;
    spawn_app_on(database_url, options).await
}

/// Starts a service on an existing database (several may share one, as replicas do).
pub async fn spawn_app_on(database_url: String, options: TestOptions) -> TestApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let settings = ServiceSettings {
        database_url: database_url.clone(),
        database_max_connections: 10,
        migrate: true,
        auth: Some(options.auth),
        cloudfront: options.cloudfront,
        calls: options.calls,
        http: options.http,
        run_api: true,
        run_worker: options.worker.is_some(),
        worker: options.worker.unwrap_or_default(),
        webhooks: options.webhooks,
    };
    let service = app::start(settings, Some(listener))
        .await
        .expect("service starts");
    let base_url = format!("http://{}", service.address.expect("API address"));
    TestApp {
        base_url,
        client: Client::new(),
        pool: service.pool.clone(),
        simulator: service.simulator.clone(),
        simulator_endpoint: service.simulator_endpoint.clone(),
        service: Some(service),
    }
}

impl TestApp {
    pub fn token(&self, owner: &str) -> String {
        issue_token(SECRET.as_bytes(), owner, 3600).unwrap()
    }

    pub fn request(&self, method: Method, path: &str, owner: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base_url))
            .bearer_auth(self.token(owner))
    }

    pub fn simulator(&self) -> &Simulator {
        self.simulator
            .as_ref()
            .expect("this test app runs the embedded simulator")
    }

    /// POSTs a minimal valid distribution for `owner` and returns the 202 body.
    pub async fn create(&self, owner: &str) -> Value {
        let response = self
            .request(Method::POST, "/v1/distributions", owner)
            .json(&json!({"origin": {"domain_name": "origin.example.com"}, "comment": "test"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        response.json().await.unwrap()
    }

    pub async fn get(&self, id: &str, owner: &str) -> Response {
        self.request(Method::GET, &format!("/v1/distributions/{id}"), owner)
            .send()
            .await
            .unwrap()
    }

    pub async fn delete(&self, id: &str, owner: &str) -> Response {
        self.request(Method::DELETE, &format!("/v1/distributions/{id}"), owner)
            .send()
            .await
            .unwrap()
    }

    /// Polls the resource until its status is `status`, failing after `timeout`.
    pub async fn wait_for_status(
        &self,
        id: &str,
        owner: &str,
        status: &str,
        timeout: Duration,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            let response = self.get(id, owner).await;
            assert_eq!(response.status(), StatusCode::OK);
            last = response.json().await.unwrap();
            if last["status"] == status {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("distribution {id} did not reach {status} within {timeout:?}; last seen: {last:#}");
    }

    /// Counts rows in a table of the test database.
    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    pub async fn stop(mut self) {
        if let Some(service) = self.service.take() {
            service.stop().await.unwrap();
        }
    }
}

/// Asserts a problem+json answer with the given status and problem type slug.
pub async fn assert_problem(response: Response, status: StatusCode, slug: &str) -> Value {
    assert_eq!(response.status(), status);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["type"],
        format!("urn:cloudfront-lifecycle:problem:{slug}")
    );
    assert_eq!(body["status"], status.as_u16());
    body
}

/// moto's CloudFront server on a free loopback port, stopped when dropped.
pub struct Moto {
    pub endpoint: String,
    child: Child,
}

impl Moto {
    pub async fn start() -> Moto {
        let binary = std::env::var("MOTO_SERVER_BIN").expect(
            "MOTO_SERVER_BIN is not set: run the suite with scripts/test.sh, which installs moto",
        );
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let child = Command::new(binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let endpoint = format!("http://127.0.0.1:{port}");

        let deadline = Instant::now() + Duration::from_secs(30);
        let client = Client::new();
        loop {
            let reset = client
                .post(format!("{endpoint}/moto-api/reset"))
                .send()
                .await;
            if matches!(reset, Ok(ref response) if response.status().is_success()) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "moto did not answer on {endpoint} within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Moto { endpoint, child }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
