//! The committed OpenAPI document must match what the code generates.

use crate::harness::spawn_app;

#[test]
fn committed_openapi_matches_code() {
    let generated = cloudfront_lifecycle::api::openapi_json();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json");
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi/openapi.json is out of date; regenerate it with: cargo run -q -- openapi > openapi/openapi.json"
    );
}

#[tokio::test]
async fn served_openapi_matches_code() {
    let app = spawn_app().await;
    let served: serde_json::Value = app
        .client
        .get(format!("{}/openapi.json", app.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let generated: serde_json::Value =
        serde_json::from_str(&cloudfront_lifecycle::api::openapi_json()).unwrap();
    assert_eq!(served, generated);
    app.stop().await;
}
