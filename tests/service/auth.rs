//! Bearer-token checks and tenant isolation.

use reqwest::{Method, StatusCode};
use serde::Serialize;

use crate::harness::{SECRET, assert_problem, spawn_app};

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    exp: u64,
}

fn sign(secret: &str, sub: &str, exp: u64) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &Claims { sub, exp },
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

#[tokio::test]
async fn missing_token_is_401() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(format!("{}/v1/distributions", app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers().get("www-authenticate").unwrap(),
        "Bearer error=\"invalid_token\""
    );
    assert_problem(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    app.stop().await;
}

#[tokio::test]
async fn bad_tokens_are_401() {
    let app = spawn_app().await;
    let cases = [
        ("expired", sign(SECRET, "alice", now() - 3600)),
        (
            "other secret",
            sign(
                "another-secret-also-long-enough-for-hs256-xx",
                "alice",
                now() + 3600,
            ),
        ),
        ("not a jwt", "not-a-token".to_owned()),
        ("empty subject", sign(SECRET, "", now() + 3600)),
    ];
    for (case, token) in cases {
        let response = app
            .client
            .get(format!("{}/v1/distributions", app.base_url))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "case: {case}");
        assert_problem(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }

    let response = app
        .client
        .get(format!("{}/v1/distributions", app.base_url))
        .header("authorization", "Basic YWxpY2U6cGFzcw==")
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    app.stop().await;
}

#[tokio::test]
async fn other_owner_sees_not_found() {
    let app = spawn_app().await;
    let id = app.create("alice").await["id"].as_str().unwrap().to_owned();
    let unknown = uuid::Uuid::now_v7().to_string();

    for target in [&id, &unknown] {
        let response = app.get(target, "mallory").await;
        assert_problem(response, StatusCode::NOT_FOUND, "not-found").await;
        let response = app.delete(target, "mallory").await;
        assert_problem(response, StatusCode::NOT_FOUND, "not-found").await;
    }

    let page: serde_json::Value = app
        .request(Method::GET, "/v1/distributions", "mallory")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 0);

    // Mallory's delete changed nothing.
    let intent: String = sqlx::query_scalar("select intent from distributions where id = $1::uuid")
        .bind(&id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(intent, "keep");
    app.stop().await;
}
