//! Updates, lost-update protection, idempotent creates and quotas.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{TestOptions, assert_problem, spawn_app, spawn_app_with};

const BODY: &str = r#"{"origin": {"domain_name": "origin.example.com"}, "comment": "first"}"#;

async fn patch(
    app: &crate::harness::TestApp,
    id: &str,
    body: Value,
    if_match: Option<&str>,
) -> reqwest::Response {
    let mut request = app
        .request(Method::PATCH, &format!("/v1/distributions/{id}"), "alice")
        .json(&body);
    if let Some(etag) = if_match {
        request = request.header("if-match", etag);
    }
    request.send().await.unwrap()
}

fn etag(response: &reqwest::Response) -> String {
    response.headers()["etag"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn patch_applies_config_in_cloudfront() {
    let app = spawn_app().await;
    let id = app.create("alice").await["id"].as_str().unwrap().to_owned();
    let deployed = app
        .wait_for_status(&id, "alice", "deployed", Duration::from_secs(15))
        .await;
    let cloudfront_id = deployed["cloudfront"]["id"].as_str().unwrap().to_owned();

    let response = patch(
        &app,
        &id,
        json!({"comment": "second", "price_class": "PriceClass_100"}),
        None,
    )
    .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["config"]["comment"], "second");

    // Deployed again, with the new config in CloudFront.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let updated = loop {
        let current: Value = app.get(&id, "alice").await.json().await.unwrap();
        let in_cloudfront = app
            .simulator()
            .distribution(&cloudfront_id)
            .expect("still in the simulator");
        if current["status"] == "deployed" && in_cloudfront.comment == "second" {
            break current;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "update not applied within 15 s: {current:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(updated["config"]["price_class"], "PriceClass_100");
    assert_eq!(updated["cloudfront"]["status"], "Deployed");

    let statuses: Vec<String> = sqlx::query_scalar(
        "select to_status from distribution_events where distribution_id = $1::uuid order by id",
    )
    .bind(&id)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert!(
        statuses.iter().any(|status| status == "updating"),
        "history: {statuses:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn patch_with_invalid_field_is_422() {
    let app = spawn_app().await;
    let id = app.create("alice").await["id"].as_str().unwrap().to_owned();
    let response = patch(&app, &id, json!({"comment": "x".repeat(129)}), None).await;
    let body = assert_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation-failed",
    )
    .await;
    assert_eq!(body["errors"][0]["pointer"], "/comment");
    let response = patch(&app, &id, json!({"colour": "blue"}), None).await;
    assert_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation-failed",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn patch_during_deletion_is_409() {
    let app = spawn_app_with(TestOptions {
        worker: None,
        ..TestOptions::default()
    })
    .await;
    let id = app.create("alice").await["id"].as_str().unwrap().to_owned();
    assert_eq!(
        app.delete(&id, "alice").await.status(),
        StatusCode::ACCEPTED
    );

    let response = patch(&app, &id, json!({"comment": "too late"}), None).await;
    assert_problem(response, StatusCode::CONFLICT, "conflict").await;
    app.stop().await;
}

#[tokio::test]
async fn stale_if_match_is_412() {
    let app = spawn_app_with(TestOptions {
        worker: None,
        ..TestOptions::default()
    })
    .await;
    let id = app.create("alice").await["id"].as_str().unwrap().to_owned();
    let first = app.get(&id, "alice").await;
    let first_etag = etag(&first);

    // Tab one updates with the current ETag: accepted, and the ETag changes.
    let response = patch(&app, &id, json!({"comment": "tab one"}), Some(&first_etag)).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let second_etag = etag(&response);
    assert_ne!(first_etag, second_etag);

    // Tab two still has the first ETag: both its update and its delete are rejected.
    let response = patch(&app, &id, json!({"comment": "tab two"}), Some(&first_etag)).await;
    assert_problem(
        response,
        StatusCode::PRECONDITION_FAILED,
        "precondition-failed",
    )
    .await;
    let response = app
        .request(Method::DELETE, &format!("/v1/distributions/{id}"), "alice")
        .header("if-match", &first_etag)
        .send()
        .await
        .unwrap();
    assert_problem(
        response,
        StatusCode::PRECONDITION_FAILED,
        "precondition-failed",
    )
    .await;

    let current: Value = app.get(&id, "alice").await.json().await.unwrap();
    assert_eq!(current["config"]["comment"], "tab one");
    assert!(current["deletion"].is_null());

    // With the current ETag the delete goes through.
    let response = app
        .request(Method::DELETE, &format!("/v1/distributions/{id}"), "alice")
        .header("if-match", &second_etag)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    app.stop().await;
}

async fn post_with_key(app: &crate::harness::TestApp, key: &str, body: &str) -> reqwest::Response {
    app.request(Method::POST, "/v1/distributions", "alice")
        .header("content-type", "application/json")
        .header("idempotency-key", key)
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn idempotency_key_replays_original() {
    let app = spawn_app_with(TestOptions {
        worker: None,
        ..TestOptions::default()
    })
    .await;

    let first = post_with_key(&app, "key-1", BODY).await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let first_location = first.headers()["location"].clone();
    let first_body: Value = first.json().await.unwrap();

    let replay = post_with_key(&app, "key-1", BODY).await;
    assert_eq!(replay.status(), StatusCode::ACCEPTED);
    assert_eq!(replay.headers()["location"], first_location);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let replay_body: Value = replay.json().await.unwrap();
    assert_eq!(replay_body, first_body);

    assert_eq!(app.count("select count(*) from distributions").await, 1);

    // The same key from another owner is another key.
    let other = app
        .request(Method::POST, "/v1/distributions", "bob")
        .header("content-type", "application/json")
        .header("idempotency-key", "key-1")
        .body(BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::ACCEPTED);
    assert_eq!(app.count("select count(*) from distributions").await, 2);
    app.stop().await;
}

#[tokio::test]
async fn idempotency_key_other_body_is_422() {
    let app = spawn_app_with(TestOptions {
        worker: None,
        ..TestOptions::default()
    })
    .await;
    assert_eq!(
        post_with_key(&app, "key-2", BODY).await.status(),
        StatusCode::ACCEPTED
    );

    let other_body = r#"{"origin": {"domain_name": "origin.example.com"}, "comment": "second"}"#;
    let response = post_with_key(&app, "key-2", other_body).await;
    assert_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation-failed",
    )
    .await;
    assert_eq!(app.count("select count(*) from distributions").await, 1);

    let response = post_with_key(&app, "key with spaces", BODY).await;
    assert_problem(response, StatusCode::BAD_REQUEST, "invalid-parameter").await;
    app.stop().await;
}

#[tokio::test]
async fn concurrent_same_key_creates_once() {
    let app = spawn_app_with(TestOptions {
        worker: None,
        ..TestOptions::default()
    })
    .await;
    let mut requests = Vec::new();
    for _ in 0..8 {
        requests.push(post_with_key(&app, "key-3", BODY));
    }
    let responses = futures::future::join_all(requests).await;
    for response in responses {
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }
    assert_eq!(app.count("select count(*) from distributions").await, 1);
    app.stop().await;
}

#[tokio::test]
async fn owner_quota_is_409() {
    let mut options = TestOptions {
        worker: None,
        ..TestOptions::default()
    };
    options.http.limits.max_distributions_per_owner = 2;
    let app = spawn_app_with(options).await;
    app.create("alice").await;
    let second = app.create("alice").await["id"].as_str().unwrap().to_owned();

    let response = app
        .request(Method::POST, "/v1/distributions", "alice")
        .header("content-type", "application/json")
        .body(BODY)
        .send()
        .await
        .unwrap();
    let body = assert_problem(response, StatusCode::CONFLICT, "quota-exceeded").await;
    assert!(body["detail"].as_str().unwrap().contains("limit is 2"));

    // Another owner is unaffected.
    app.create("bob").await;

    // A deleted distribution no longer counts.
    sqlx::query("update distributions set status = 'deleted' where id = $1::uuid")
        .bind(&second)
        .execute(&app.pool)
        .await
        .unwrap();
    app.create("alice").await;
    app.stop().await;
}
