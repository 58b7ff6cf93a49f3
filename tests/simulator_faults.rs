//! Injected faults and inspection of the CloudFront simulator, observed through
//! aws-sdk-cloudfront and the admin API.

use std::time::{Duration, Instant};

use aws_sdk_cloudfront::Client;
use aws_sdk_cloudfront::error::SdkError;
use aws_sdk_cloudfront::types::DistributionConfig;
use cloudfront_lifecycle::cloudfront::{CallSettings, CloudFront};
use cloudfront_lifecycle::simulator::{
    DeployTime, DistributionStatus, ExternalChange, ExternalCreate, InjectedError, LostResponse,
    LostResponseMode, Operation, RateLimit, RateLimits, Simulator, SimulatorServer,
    SimulatorSettings, StaleReads,
};
use cloudfront_lifecycle::spec::DistributionSpec;
use serde_json::{Value, json};

async fn start() -> (Simulator, SimulatorServer, Client) {
    let simulator = Simulator::new(SimulatorSettings::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = simulator.spawn(listener).await.unwrap();
    let client = client(&server.endpoint(), 1);
    (simulator, server, client)
}

fn client(endpoint: &str, max_attempts: u32) -> Client {
    let settings = CallSettings {
        max_attempts,
        ..CallSettings::default()
    };
    CloudFront::for_endpoint(endpoint, &settings)
        .client()
        .clone()
}

/// Builds a complete config with the service's own builder, the one production uses.
fn distribution_config(caller_reference: &str, enabled: bool) -> DistributionConfig {
    let spec: DistributionSpec = serde_json::from_value(serde_json::json!({
        "origin": {"domain_name": "origin.example.com"},
        "comment": "simulator test",
        "enabled": enabled,
    }))
    .unwrap();
    cloudfront_lifecycle::cloudfront::config::distribution_config(caller_reference, &spec).unwrap()
}

async fn create(client: &Client, caller_reference: &str, enabled: bool) -> (String, String) {
    let output = client
        .create_distribution()
        .distribution_config(distribution_config(caller_reference, enabled))
        .send()
        .await
        .unwrap();
    let id = output.distribution().unwrap().id().to_string();
    (id, output.e_tag().unwrap().to_string())
}

async fn update_enabled(client: &Client, id: &str, enabled: bool) -> String {
    let current = client
        .get_distribution_config()
        .id(id)
        .send()
        .await
        .unwrap();
    let mut config = current.distribution_config().unwrap().clone();
    config.enabled = enabled;
    let output = client
        .update_distribution()
        .id(id)
        .if_match(current.e_tag().unwrap())
        .distribution_config(config)
        .send()
        .await
        .unwrap();
    output.e_tag().unwrap().to_string()
}

fn throttling(operation: Option<Operation>, count: u32) -> InjectedError {
    InjectedError {
        operation,
        count,
        status: 400,
        code: "Throttling".into(),
        message: "Rate exceeded".into(),
    }
}

#[tokio::test]
async fn injected_throttling_fails_n_calls() {
    let (simulator, _server, client) = start().await;
    let (id, _) = create(&client, "throttle-1", true).await;
    simulator.inject_error(throttling(Some(Operation::GetDistribution), 3));

    for attempt in 1..=3 {
        let error = client.get_distribution().id(&id).send().await.unwrap_err();
        let code = error
            .as_service_error()
            .and_then(|e| e.meta().code())
            .map(str::to_string);
        assert_eq!(code.as_deref(), Some("Throttling"), "attempt {attempt}");
    }
    let fourth = client.get_distribution().id(&id).send().await;
    assert!(fourth.is_ok(), "{fourth:?}");
}

#[tokio::test]
async fn injected_throttling_retried_by_sdk() {
    let (simulator, server, _client) = start().await;
    let retrying = client(&server.endpoint(), 3);
    simulator.inject_error(throttling(None, 2));

    let created = retrying
        .create_distribution()
        .distribution_config(distribution_config("throttle-2", true))
        .send()
        .await;
    assert!(created.is_ok(), "{created:?}");
    let counts = simulator.call_counts();
    assert_eq!(counts.get(&Operation::CreateDistribution), Some(&3));
}

#[tokio::test]
async fn injected_permanent_error_via_admin_api() {
    let (_simulator, server, client) = start().await;
    let (id, _) = create(&client, "permanent-1", true).await;
    let response = reqwest::Client::new()
        .post(format!("{}/__simulator/faults/errors", server.endpoint()))
        .json(&json!({
            "operation": "UpdateDistribution",
            "count": 1,
            "status": 400,
            "code": "IllegalUpdate",
            "message": "The config cannot be expressed in this API version."
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 204);

    let current = client
        .get_distribution_config()
        .id(&id)
        .send()
        .await
        .unwrap();
    let error = client
        .update_distribution()
        .id(&id)
        .if_match(current.e_tag().unwrap())
        .distribution_config(current.distribution_config().unwrap().clone())
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(error.is_illegal_update(), "{error:?}");
}

#[tokio::test]
async fn lost_create_response_keeps_distribution() {
    let (simulator, _server, client) = start().await;
    simulator.lose_responses(LostResponse {
        operation: Some(Operation::CreateDistribution),
        count: 1,
        mode: LostResponseMode::InternalError,
    });

    let error = client
        .create_distribution()
        .distribution_config(distribution_config("lost-1", true))
        .send()
        .await
        .unwrap_err();
    let code = error
        .as_service_error()
        .and_then(|e| e.meta().code())
        .map(str::to_string);
    assert_eq!(code.as_deref(), Some("InternalError"));
    let distributions = simulator.distributions();
    assert_eq!(distributions.len(), 1, "the create happened");

    let error = client
        .create_distribution()
        .distribution_config(distribution_config("lost-1", true))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(error.is_distribution_already_exists(), "{error:?}");
    let message = error.meta().message().unwrap_or_default();
    assert!(message.ends_with(&distributions[0].id), "{message}");
}

#[tokio::test]
async fn dropped_delete_response_still_deletes() {
    let (simulator, _server, client) = start().await;
    let (id, _) = create(&client, "dropped-1", true).await;
    let etag = update_enabled(&client, &id, false).await;
    simulator.lose_responses(LostResponse {
        operation: Some(Operation::DeleteDistribution),
        count: 1,
        mode: LostResponseMode::DropConnection,
    });

    let error = client
        .delete_distribution()
        .id(&id)
        .if_match(&etag)
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            SdkError::ResponseError(_) | SdkError::DispatchFailure(_)
        ),
        "expected a transport error, got {error:?}"
    );
    assert!(simulator.distribution(&id).is_none(), "the delete happened");
}

#[tokio::test]
async fn stale_read_returns_previous_etag() {
    let (simulator, _server, client) = start().await;
    let (id, first) = create(&client, "stale-1", true).await;
    let second = update_enabled(&client, &id, false).await;
    simulator.serve_stale_reads(StaleReads {
        distribution_id: Some(id.clone()),
        count: 1,
    });

    let stale = client.get_distribution().id(&id).send().await.unwrap();
    assert_eq!(stale.e_tag(), Some(first.as_str()), "first read is stale");
    let enabled = stale
        .distribution()
        .unwrap()
        .distribution_config()
        .unwrap()
        .enabled();
    assert!(enabled, "stale read shows the old Enabled");
    let fresh = client.get_distribution().id(&id).send().await.unwrap();
    assert_eq!(
        fresh.e_tag(),
        Some(second.as_str()),
        "second read is current"
    );
}

#[tokio::test]
async fn rate_limit_throttles_above_burst() {
    let (simulator, _server, client) = start().await;
    simulator.set_rate_limits(RateLimits {
        mutating: Some(RateLimit {
            rate_per_second: 0.001,
            burst: 2,
        }),
        read: None,
    });

    create(&client, "rate-1", true).await;
    let (id, _) = create(&client, "rate-2", true).await;
    let error = client
        .create_distribution()
        .distribution_config(distribution_config("rate-3", true))
        .send()
        .await
        .unwrap_err();
    let code = error
        .as_service_error()
        .and_then(|e| e.meta().code())
        .map(str::to_string);
    assert_eq!(code.as_deref(), Some("Throttling"));
    let read = client.get_distribution().id(&id).send().await;
    assert!(read.is_ok(), "reads have their own bucket: {read:?}");
}

#[tokio::test]
async fn latency_delays_each_call() {
    let (simulator, _server, client) = start().await;
    let (id, _) = create(&client, "latency-1", true).await;
    simulator.set_latency(Duration::from_millis(200));

    let started = Instant::now();
    client.get_distribution().id(&id).send().await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn call_log_records_state_at_delete() {
    let (simulator, _server, client) = start().await;
    let (id, etag) = create(&client, "log-1", true).await;
    let rejected = client
        .delete_distribution()
        .id(&id)
        .if_match(&etag)
        .send()
        .await;
    assert!(rejected.is_err());
    let etag = update_enabled(&client, &id, false).await;
    client
        .delete_distribution()
        .id(&id)
        .if_match(&etag)
        .send()
        .await
        .unwrap();

    let deletes: Vec<_> = simulator
        .calls()
        .into_iter()
        .filter(|call| call.operation == Operation::DeleteDistribution)
        .collect();
    assert_eq!(deletes.len(), 2);
    assert_eq!(deletes[0].enabled, Some(true));
    assert_eq!(
        deletes[0].error_code.as_deref(),
        Some("DistributionNotDisabled")
    );
    assert_eq!(deletes[1].enabled, Some(false));
    assert_eq!(deletes[1].status, Some(DistributionStatus::Deployed));
    assert_eq!(deletes[1].http_status, 204);
    assert_eq!(deletes[1].if_match.as_deref(), Some(etag.as_str()));
}

#[tokio::test]
async fn external_reenable_blocks_delete() {
    let (simulator, _server, client) = start().await;
    let (id, _) = create(&client, "reenable-1", true).await;
    let disabled = update_enabled(&client, &id, false).await;
    let reenabled = simulator
        .external_change(
            &id,
            ExternalChange {
                enabled: Some(true),
                ..Default::default()
            },
        )
        .unwrap();

    let error = client
        .delete_distribution()
        .id(&id)
        .if_match(&disabled)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(error.is_precondition_failed(), "old ETag: {error:?}");
    let error = client
        .delete_distribution()
        .id(&id)
        .if_match(&reenabled.etag)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(error.is_distribution_not_disabled(), "new ETag: {error:?}");
}

#[tokio::test]
async fn external_delete_gives_404() {
    let (simulator, _server, client) = start().await;
    let (id, _) = create(&client, "gone-1", true).await;
    simulator.external_delete(&id).unwrap();

    let error = client
        .get_distribution()
        .id(&id)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(error.is_no_such_distribution(), "{error:?}");
}

#[tokio::test]
async fn external_create_old_is_deployed() {
    let (simulator, _server, client) = start().await;
    simulator.set_deploy_time(DeployTime::Fixed(Duration::from_secs(300)));
    let view = simulator
        .external_create(ExternalCreate {
            enabled: false,
            tags: vec![cloudfront_lifecycle::simulator::Tag {
                key: "team".into(),
                value: Some("web".into()),
            }],
            age: Duration::from_secs(600),
            ..Default::default()
        })
        .unwrap();

    let read = client.get_distribution().id(&view.id).send().await.unwrap();
    assert_eq!(read.distribution().unwrap().status(), "Deployed");
    let tags = client
        .list_tags_for_resource()
        .resource(&view.arn)
        .send()
        .await
        .unwrap();
    assert_eq!(tags.tags().unwrap().items().len(), 1);
    let deleted = client
        .delete_distribution()
        .id(&view.id)
        .if_match(&view.etag)
        .send()
        .await;
    assert!(deleted.is_ok(), "{deleted:?}");
}

#[tokio::test]
async fn per_distribution_deploy_time_applies() {
    let (simulator, _server, client) = start().await;
    let (id, _) = create(&client, "own-deploy-1", true).await;
    simulator
        .set_distribution_deploy_time(&id, DeployTime::Fixed(Duration::from_secs(600)))
        .unwrap();
    let (other, _) = create(&client, "own-deploy-2", true).await;

    update_enabled(&client, &id, false).await;
    update_enabled(&client, &other, false).await;
    assert_eq!(
        simulator.distribution(&id).unwrap().status,
        DistributionStatus::InProgress
    );
    assert_eq!(
        simulator.distribution(&other).unwrap().status,
        DistributionStatus::Deployed
    );
}

#[tokio::test]
async fn admin_api_lists_and_resets() {
    let (_simulator, server, client) = start().await;
    let (id, etag) = create(&client, "admin-1", true).await;
    let http = reqwest::Client::new();
    let base = format!("{}/__simulator", server.endpoint());

    let distributions: Value = http
        .get(format!("{base}/distributions"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(distributions[0]["id"], json!(id));
    assert_eq!(distributions[0]["etag"], json!(etag));
    assert_eq!(distributions[0]["status"], json!("Deployed"));
    let calls: Value = http
        .get(format!("{base}/calls"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(calls[0]["operation"], json!("CreateDistribution"));
    let counts: Value = http
        .get(format!("{base}/calls/counts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(counts["CreateDistribution"], json!(1));

    let patched = http
        .patch(format!("{base}/distributions/{id}"))
        .json(&json!({"enabled": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status().as_u16(), 200);
    let reset = http.post(format!("{base}/reset")).send().await.unwrap();
    assert_eq!(reset.status().as_u16(), 204);
    let distributions: Value = http
        .get(format!("{base}/distributions"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(distributions, json!([]));
}

#[tokio::test]
async fn admin_api_rejects_invalid_deploy_time() {
    let (_simulator, server, _client) = start().await;
    let response = reqwest::Client::new()
        .put(format!("{}/__simulator/deploy-time", server.endpoint()))
        .json(&json!({"random": {"min": 5000, "median": 1000, "max": 9000, "seed": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
}

#[tokio::test]
async fn server_shutdown_stops_serving() {
    let (_simulator, server, client) = start().await;
    server.shutdown().await;

    let result = client.list_distributions().send().await;
    assert!(
        matches!(result, Err(SdkError::DispatchFailure(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn admin_api_arms_each_fault() {
    let (simulator, server, client) = start().await;
    let (id, _) = create(&client, "admin-faults-1", true).await;
    let http = reqwest::Client::new();
    let base = format!("{}/__simulator", server.endpoint());
    let requests = [
        (
            "POST",
            "faults/errors",
            json!({"operation": "ListDistributions", "count": 1, "status": 503, "code": "ServiceUnavailable", "message": "Try again."}),
        ),
        (
            "POST",
            "faults/lost-responses",
            json!({"operation": "TagResource", "count": 1, "mode": "drop_connection"}),
        ),
        ("PUT", "faults/latency", json!({"latency_ms": 0})),
        (
            "POST",
            "faults/stale-reads",
            json!({"distribution_id": id, "count": 1}),
        ),
        (
            "PUT",
            "faults/rate-limits",
            json!({"mutating": {"rate_per_second": 5.0, "burst": 10}, "read": null}),
        ),
        (
            "PUT",
            "deploy-time",
            json!({"random": {"min": 0, "median": 10, "max": 20, "seed": 3}}),
        ),
        (
            "PUT",
            &format!("distributions/{id}/deploy-time"),
            json!({"fixed": 0}),
        ),
    ];
    for (method, path, body) in requests {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = http
            .request(method, format!("{base}/{path}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 204, "{path}");
    }

    let error = client.list_distributions().send().await.unwrap_err();
    let code = error
        .as_service_error()
        .and_then(|e| e.meta().code())
        .map(str::to_string);
    assert_eq!(
        code.as_deref(),
        Some("ServiceUnavailable"),
        "injected error applies"
    );
    let cleared = http.delete(format!("{base}/faults")).send().await.unwrap();
    assert_eq!(cleared.status().as_u16(), 204);
    let listed = client.list_distributions().send().await;
    assert!(listed.is_ok(), "faults cleared: {listed:?}");
    assert_eq!(
        simulator.calls().len(),
        3,
        "create and two lists were logged"
    );
}
