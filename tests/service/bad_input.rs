//! Bad input answers a 4xx problem+json and writes nothing.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{assert_problem, spawn_app};

const ROWS: &str = "select count(*) from distributions";

#[tokio::test]
async fn malformed_json_is_400() {
    let app = spawn_app().await;
    let response = app
        .request(Method::POST, "/v1/distributions", "alice")
        .header("content-type", "application/json")
        .body("{\"origin\": ")
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::BAD_REQUEST, "malformed-body").await;
    assert_eq!(app.count(ROWS).await, 0);
    app.stop().await;
}

#[tokio::test]
async fn missing_origin_is_422() {
    let app = spawn_app().await;
    let response = app
        .request(Method::POST, "/v1/distributions", "alice")
        .json(&json!({"comment": "no origin"}))
        .send()
        .await
        .unwrap();
    let body = assert_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation-failed",
    )
    .await;
    assert!(
        body["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("origin")
    );
    assert_eq!(app.count(ROWS).await, 0);
    app.stop().await;
}

#[tokio::test]
async fn invalid_fields_listed() {
    let app = spawn_app().await;
    let response = app
        .request(Method::POST, "/v1/distributions", "alice")
        .json(&json!({
            "origin": {"domain_name": "not a host"},
            "aliases": ["cdn.example.com"],
            "comment": "x".repeat(129),
        }))
        .send()
        .await
        .unwrap();
    let body = assert_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation-failed",
    )
    .await;
    let pointers: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|error| error["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(
        pointers,
        ["/origin/domain_name", "/certificate_arn", "/comment"]
    );
    assert_eq!(app.count(ROWS).await, 0);
    app.stop().await;
}

#[tokio::test]
async fn unknown_field_is_422() {
    let app = spawn_app().await;
    let response = app
        .request(Method::POST, "/v1/distributions", "alice")
        .json(&json!({"origin": {"domain_name": "origin.example.com"}, "colour": "blue"}))
        .send()
        .await
        .unwrap();
    assert_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation-failed",
    )
    .await;
    assert_eq!(app.count(ROWS).await, 0);
    app.stop().await;
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let app = spawn_app().await;
    let response = app
        .request(Method::POST, "/v1/distributions", "alice")
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_problem(
        response,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
    )
    .await;
    assert_eq!(app.count(ROWS).await, 0);
    app.stop().await;
}

#[tokio::test]
async fn oversized_body_is_413() {
    let app = spawn_app().await;
    let response = app
        .request(Method::POST, "/v1/distributions", "alice")
        .header("content-type", "application/json")
        .body(format!("{{\"comment\": \"{}\"}}", "x".repeat(200 * 1024)))
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large").await;
    assert_eq!(app.count(ROWS).await, 0);
    app.stop().await;
}

#[tokio::test]
async fn non_uuid_id_is_400() {
    let app = spawn_app().await;
    let response = app.get("not-a-uuid", "alice").await;
    assert_problem(response, StatusCode::BAD_REQUEST, "invalid-parameter").await;
    let response = app.delete("123", "alice").await;
    assert_problem(response, StatusCode::BAD_REQUEST, "invalid-parameter").await;
    assert_eq!(
        app.count("select count(*) from distribution_events").await,
        0
    );
    app.stop().await;
}

#[tokio::test]
async fn bad_list_parameters_are_400() {
    let app = spawn_app().await;
    for query in [
        "limit=0",
        "limit=100000",
        "cursor=forged",
        "status=flying",
        "sort=up",
    ] {
        let response = app
            .request(Method::GET, &format!("/v1/distributions?{query}"), "alice")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "query: {query}");
        assert_problem(response, StatusCode::BAD_REQUEST, "invalid-parameter").await;
    }
    app.stop().await;
}

#[tokio::test]
async fn unknown_route_is_problem() {
    let app = spawn_app().await;
    let response = app
        .request(Method::GET, "/v2/nothing", "alice")
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::NOT_FOUND, "not-found").await;
    let response = app
        .request(Method::PUT, "/v1/distributions", "alice")
        .send()
        .await
        .unwrap();
    assert_problem(
        response,
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn wrong_type_names_nested_field() {
    let app = spawn_app().await;
    let response = app
        .request(Method::POST, "/v1/distributions", "alice")
        .json(&json!({"origin": {"domain_name": "origin.example.com"}, "aliases": ["a.example.com", 7]}))
        .send()
        .await
        .unwrap();
    let body = assert_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation-failed",
    )
    .await;
    assert_eq!(body["errors"][0]["pointer"], "/aliases/1");

    let response = app
        .request(Method::POST, "/v1/distributions", "alice")
        .json(&json!({"origin": {"domain_name": "origin.example.com"}, "price_class": "Cheap"}))
        .send()
        .await
        .unwrap();
    let body = assert_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation-failed",
    )
    .await;
    assert_eq!(body["errors"][0]["pointer"], "/price_class");

    let response = app
        .request(Method::POST, "/v1/distributions", "alice")
        .header("content-type", "application/json")
        .body("{\"origin\": {\"domain_name\": \"origin.example.com\"}} trailing")
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::BAD_REQUEST, "malformed-body").await;
    assert_eq!(app.count(ROWS).await, 0);
    app.stop().await;
}
