//! Inputs and interleavings chosen to break the service. Most tests reproduce a bug found
//! by attacking it, and the rest pin behaviour that held up under attack.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{TestOptions, assert_problem, spawn_app, spawn_app_with};

const ROWS: &str = "select count(*) from distributions";

/// Returns options for a service without a worker, so rows stay where the API left them.
fn api_only() -> TestOptions {
    TestOptions {
        worker: None,
        ..TestOptions::default()
    }
}

#[tokio::test]
async fn create_comment_with_nul_is_422() {
    let app = spawn_app().await;

    // Postgres cannot store U+0000 in jsonb, so this must be rejected before the insert.
    let response = app
        .request(Method::POST, "/v1/distributions", "alice")
        .json(&json!({"origin": {"domain_name": "origin.example.com"}, "comment": "a\u{0}b"}))
        .send()
        .await
        .unwrap();
    let body = assert_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation-failed",
    )
    .await;
    assert_eq!(body["errors"][0]["pointer"], "/comment");
    assert_eq!(app.count(ROWS).await, 0);
    app.stop().await;
}

#[tokio::test]
async fn patch_comment_with_nul_is_422() {
    let app = spawn_app_with(api_only()).await;
    let created = app.create("alice").await;
    let id = created["id"].as_str().unwrap();

    let response = app
        .request(Method::PATCH, &format!("/v1/distributions/{id}"), "alice")
        .json(&json!({"comment": "\u{0}"}))
        .send()
        .await
        .unwrap();
    let body = assert_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation-failed",
    )
    .await;
    assert_eq!(body["errors"][0]["pointer"], "/comment");

    let stored: Value = app.get(id, "alice").await.json().await.unwrap();
    assert_eq!(stored["config"]["comment"], "test");
    app.stop().await;
}

#[tokio::test]
async fn cursor_before_postgres_range_is_400() {
    let app = spawn_app_with(api_only()).await;
    app.create("alice").await;

    // Chrono accepts years down to about -262000, Postgres only down to 4713 BC.
    let forged = URL_SAFE_NO_PAD.encode(format!("-8000000000000000000|{}", uuid::Uuid::nil()));
    let response = app
        .request(
            Method::GET,
            &format!("/v1/distributions?cursor={forged}"),
            "alice",
        )
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::BAD_REQUEST, "invalid-parameter").await;
    app.stop().await;
}

#[tokio::test]
async fn empty_patch_during_deletion_is_409() {
    let app = spawn_app_with(api_only()).await;
    let created = app.create("alice").await;
    let id = created["id"].as_str().unwrap();
    assert_eq!(app.delete(id, "alice").await.status(), StatusCode::ACCEPTED);

    // A PATCH that changes nothing is still a PATCH during deletion, and the README
    // promises 409 for those.
    let response = app
        .request(Method::PATCH, &format!("/v1/distributions/{id}"), "alice")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::CONFLICT, "conflict").await;

    let same_comment = app
        .request(Method::PATCH, &format!("/v1/distributions/{id}"), "alice")
        .json(&json!({"comment": "test"}))
        .send()
        .await
        .unwrap();
    assert_problem(same_comment, StatusCode::CONFLICT, "conflict").await;
    app.stop().await;
}

#[tokio::test]
async fn non_ascii_if_match_is_412() {
    let app = spawn_app_with(api_only()).await;
    let created = app.create("alice").await;
    let id = created["id"].as_str().unwrap();

    // An ETag this service never issued must not match, even when the header is not
    // valid UTF-8. Ignoring it would turn a conditional delete into an unconditional one.
    let garbage = reqwest::header::HeaderValue::from_bytes(b"\"1\xff\"").unwrap();
    let response = app
        .request(Method::DELETE, &format!("/v1/distributions/{id}"), "alice")
        .header("if-match", garbage.clone())
        .send()
        .await
        .unwrap();
    assert_problem(
        response,
        StatusCode::PRECONDITION_FAILED,
        "precondition-failed",
    )
    .await;
    let stored: Value = app.get(id, "alice").await.json().await.unwrap();
    assert!(
        stored["deletion"].is_null(),
        "deletion recorded: {stored:#}"
    );

    let patch = app
        .request(Method::PATCH, &format!("/v1/distributions/{id}"), "alice")
        .header("if-match", garbage)
        .json(&json!({"comment": "changed"}))
        .send()
        .await
        .unwrap();
    assert_problem(
        patch,
        StatusCode::PRECONDITION_FAILED,
        "precondition-failed",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn concurrent_unconditional_patches_apply() {
    let app = spawn_app_with(api_only()).await;
    let created = app.create("alice").await;
    let id = created["id"].as_str().unwrap().to_owned();

    // No request names a version, so none may fail with 412. Each PATCH merges the fields
    // it names, and the README reserves 412 for a stale If-Match.
    let mut requests = Vec::new();
    for n in 0..8 {
        let request = app
            .request(Method::PATCH, &format!("/v1/distributions/{id}"), "alice")
            .json(&json!({"comment": format!("writer {n}")}));
        requests.push(tokio::spawn(async move { request.send().await.unwrap() }));
    }
    let mut statuses = Vec::new();
    for request in requests {
        statuses.push(request.await.unwrap().status());
    }
    assert!(
        statuses
            .iter()
            .all(|status| *status == StatusCode::ACCEPTED),
        "statuses: {statuses:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn owner_with_nul_is_401() {
    let app = spawn_app().await;

    // Postgres text cannot hold U+0000, so such an owner can never own a row. The token
    // must be rejected as invalid instead of failing in the database.
    let token = cloudfront_lifecycle::api::auth::issue_token(
        crate::harness::SECRET.as_bytes(),
        "alice\u{0}",
        3600,
    )
    .unwrap();
    let response = app
        .client
        .get(format!("{}/v1/distributions", app.base_url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    app.stop().await;
}

#[tokio::test]
async fn corrupt_row_does_not_hold_others() {
    let database_url = crate::harness::create_database().await;
    let pool = sqlx::PgPool::connect(&database_url).await.unwrap();
    cloudfront_lifecycle::store::MIGRATOR
        .run(&pool)
        .await
        .unwrap();

    // One row whose spec no longer parses (as after a rollback to an older build) and one
    // good row, both due, so the worker's first claim takes them together.
    let good = uuid::Uuid::now_v7();
    let corrupt = uuid::Uuid::now_v7();
    for (id, spec) in [
        (
            corrupt,
            json!({"origin": {"domain_name": "origin.example.com"}, "colour": "blue"}),
        ),
        (
            good,
            json!({"origin": {"domain_name": "origin.example.com"}}),
        ),
    ] {
        sqlx::query(
            "insert into distributions (id, owner, spec, status, caller_reference, next_check_at)
             values ($1, 'alice', $2, 'creating', $3, now())",
        )
        .bind(id)
        .bind(spec)
        .bind(format!("cloudfront-lifecycle-{id}"))
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;

    let app = crate::harness::spawn_app_on(database_url, TestOptions::default()).await;
    // The test worker's lease is 30 s; the good row must not wait for it.
    app.wait_for_status(
        &good.to_string(),
        "alice",
        "deployed",
        std::time::Duration::from_secs(10),
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn stale_read_after_update_not_deployed() {
    use cloudfront_lifecycle::simulator::{DeployTime, DistributionStatus, StaleReads};
    use std::time::Duration;

    let app = spawn_app().await;
    let created = app.create("alice").await;
    let id = created["id"].as_str().unwrap();
    let deployed = app
        .wait_for_status(id, "alice", "deployed", Duration::from_secs(10))
        .await;
    let cloudfront_id = deployed["cloudfront"]["id"].as_str().unwrap().to_owned();

    // The update takes 3 s to propagate. The first read after it returns the version
    // before the update (Deployed, old ETag), as an eventually consistent read can.
    app.simulator()
        .set_deploy_time(DeployTime::Fixed(Duration::from_secs(3)));
    app.simulator().serve_stale_reads(StaleReads {
        distribution_id: Some(cloudfront_id.clone()),
        count: 1,
    });
    let response = app
        .request(Method::PATCH, &format!("/v1/distributions/{id}"), "alice")
        .json(&json!({"comment": "second"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);

    // Wait until the worker has sent the update, so "deployed" below is its verdict.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while app
        .simulator()
        .distribution(&cloudfront_id)
        .unwrap()
        .comment
        != "second"
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the update never reached CloudFront"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let settled = app
        .wait_for_status(id, "alice", "deployed", Duration::from_secs(10))
        .await;
    let remote = app.simulator().distribution(&cloudfront_id).unwrap();
    assert_eq!(
        remote.status,
        DistributionStatus::Deployed,
        "the API said deployed while CloudFront is still propagating: {settled:#}"
    );
    app.stop().await;
}

#[tokio::test]
async fn patch_shows_updating_at_once() {
    use std::time::Duration;

    let app = spawn_app().await;
    let created = app.create("alice").await;
    let id = created["id"].as_str().unwrap();
    app.wait_for_status(id, "alice", "deployed", Duration::from_secs(10))
        .await;

    // A client that polls for "deployed" after a PATCH must not see the old status and
    // stop before the change was even sent.
    let response = app
        .request(Method::PATCH, &format!("/v1/distributions/{id}"), "alice")
        .json(&json!({"comment": "second"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "updating");
    app.stop().await;
}

/// Runs the worker binary with one extra setting and returns its exit status and stderr,
/// or `None` if it was still running after a few seconds (then it is killed).
async fn run_worker_with(name: &str, value: &str) -> Option<(std::process::ExitStatus, String)> {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    let database_url = crate::harness::create_database().await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_cloudfront-lifecycle"))
        .arg("worker")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", &database_url)
        .env("CLOUDFRONT_BACKEND", "simulator")
        .env(name, value)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
            return Some((status, stderr));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    None
}

#[tokio::test]
async fn worker_rejects_zero_intervals_and_rates() {
    // Each of these starts a worker that spins. A zero lease lets a row be claimed again
    // while its check runs and abandons every check at once. A zero safety interval
    // polls the database without pause when idle, and a zero rate never grants a token.
    for name in [
        "WORKER_LEASE_SECONDS",
        "WORKER_SAFETY_INTERVAL_SECONDS",
        "CLOUDFRONT_READ_RATE",
        "CLOUDFRONT_MUTATING_RATE",
    ] {
        let outcome = run_worker_with(name, "0").await;
        let Some((status, stderr)) = outcome else {
            panic!("the worker started with {name}=0");
        };
        assert!(!status.success(), "{name}=0: {status}");
        assert!(stderr.contains(name), "{name}=0, stderr: {stderr}");
    }
}

#[tokio::test]
async fn delete_after_lost_create_leaves_nothing() {
    use cloudfront_lifecycle::simulator::{LostResponse, LostResponseMode, Operation};
    use std::time::Duration;

    let app = spawn_app().await;
    // The create happens in CloudFront, but the service receives a 500, and the user deletes
    // the row while the worker backs off.
    app.simulator().lose_responses(LostResponse {
        operation: Some(Operation::CreateDistributionWithTags),
        count: 1,
        mode: LostResponseMode::InternalError,
    });
    app.simulator().set_latency(Duration::from_millis(150));
    let created = app.create("alice").await;
    let id = created["id"].as_str().unwrap();
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(app.delete(id, "alice").await.status(), StatusCode::ACCEPTED);

    app.wait_for_status(id, "alice", "deleted", Duration::from_secs(15))
        .await;
    let left = app.simulator().distributions();
    assert!(left.is_empty(), "left in CloudFront: {left:?}");
    app.stop().await;
}

#[tokio::test]
async fn retain_then_delete_removes_it() {
    use std::time::Duration;

    let app = spawn_app().await;
    let created = app.create("alice").await;
    let id = created["id"].as_str().unwrap();
    app.wait_for_status(id, "alice", "deployed", Duration::from_secs(10))
        .await;

    let retain = app
        .request(
            Method::DELETE,
            &format!("/v1/distributions/{id}?retain=true"),
            "alice",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(retain.status(), StatusCode::ACCEPTED);
    let disabled = app
        .wait_for_status(id, "alice", "disabled", Duration::from_secs(10))
        .await;
    assert_eq!(disabled["cloudfront"]["enabled"], false);
    assert_eq!(app.simulator().distributions().len(), 1);

    assert_eq!(app.delete(id, "alice").await.status(), StatusCode::ACCEPTED);
    app.wait_for_status(id, "alice", "deleted", Duration::from_secs(10))
        .await;
    assert!(app.simulator().distributions().is_empty());
    app.stop().await;
}

#[tokio::test]
async fn two_idempotency_keys_are_400() {
    let app = spawn_app_with(api_only()).await;

    // Which key would a retry repeat? Guessing one risks a second distribution.
    let response = app
        .request(Method::POST, "/v1/distributions", "alice")
        .header("idempotency-key", "first")
        .header("idempotency-key", "second")
        .json(&json!({"origin": {"domain_name": "origin.example.com"}}))
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::BAD_REQUEST, "invalid-parameter").await;
    assert_eq!(app.count(ROWS).await, 0);
    app.stop().await;
}

#[tokio::test]
async fn etag_changes_with_representation() {
    use cloudfront_lifecycle::simulator::DeployTime;
    use std::time::Duration;

    let app = spawn_app().await;
    let created = app.create("alice").await;
    let id = created["id"].as_str().unwrap();
    app.wait_for_status(id, "alice", "deployed", Duration::from_secs(10))
        .await;

    // A 3 s disable gives the worker several rechecks while the status stays disabling.
    app.simulator()
        .set_deploy_time(DeployTime::Fixed(Duration::from_secs(3)));
    assert_eq!(app.delete(id, "alice").await.status(), StatusCode::ACCEPTED);
    app.wait_for_status(id, "alice", "disabling", Duration::from_secs(10))
        .await;

    // The README promises that the ETag changes whenever the representation does.
    let mut previous: Option<(String, Value)> = None;
    for _ in 0..10 {
        let response = app.get(id, "alice").await;
        let etag = response.headers()["etag"].to_str().unwrap().to_owned();
        let body: Value = response.json().await.unwrap();
        if let Some((previous_etag, previous_body)) = &previous
            && *previous_etag == etag
        {
            assert_eq!(
                *previous_body, body,
                "the body changed under the same ETag {etag}"
            );
        }
        previous = Some((etag, body));
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn padded_owner_sees_nothing_of_bare_owner() {
    let app = spawn_app_with(api_only()).await;
    let created = app.create("alice").await;
    let id = created["id"].as_str().unwrap();

    // " alice" is another subject than "alice" to the token issuer, so it must not be
    // given alice's distributions.
    let token = cloudfront_lifecycle::api::auth::issue_token(
        crate::harness::SECRET.as_bytes(),
        " alice",
        3600,
    )
    .unwrap();
    let response = app
        .client
        .get(format!("{}/v1/distributions/{id}", app.base_url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_ne!(response.status(), StatusCode::OK);
    app.stop().await;
}
