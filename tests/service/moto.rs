//! The same end-to-end path against moto's CloudFront server, through the same SDK code.
//! moto reports Deployed at once and enforces neither ETags nor disable-before-delete, so
//! strictness is tested against the simulator; this proves the wire format and the flow.

use std::time::Duration;

use cloudfront_lifecycle::app::CloudFrontTarget;
use reqwest::StatusCode;

use crate::harness::{Moto, TestOptions, spawn_app_with};

#[tokio::test]
async fn moto_create_then_delete() {
    let moto = Moto::start().await;
    let app = spawn_app_with(TestOptions {
        cloudfront: CloudFrontTarget::Endpoint(moto.endpoint.clone()),
        ..TestOptions::default()
    })
    .await;

    let id = app.create("alice").await["id"].as_str().unwrap().to_owned();
    let deployed = app
        .wait_for_status(&id, "alice", "deployed", Duration::from_secs(30))
        .await;
    let cloudfront_id = deployed["cloudfront"]["id"].as_str().unwrap().to_owned();
    assert!(!cloudfront_id.is_empty());

    assert_eq!(
        app.delete(&id, "alice").await.status(),
        StatusCode::ACCEPTED
    );
    app.wait_for_status(&id, "alice", "deleted", Duration::from_secs(30))
        .await;

    // moto no longer lists the distribution.
    let cloudfront = cloudfront_lifecycle::cloudfront::CloudFront::for_endpoint(
        &moto.endpoint,
        &Default::default(),
    );
    let listed = cloudfront
        .client()
        .list_distributions()
        .send()
        .await
        .unwrap();
    let remaining = listed
        .distribution_list()
        .map(|list| list.items().len())
        .unwrap_or(0);
    assert_eq!(remaining, 0);
    app.stop().await;
}

#[tokio::test]
async fn moto_reused_caller_reference_adopts() {
    let moto = Moto::start().await;
    let app = spawn_app_with(TestOptions {
        cloudfront: CloudFrontTarget::Endpoint(moto.endpoint.clone()),
        worker: None,
        ..TestOptions::default()
    })
    .await;
    let id = app.create("alice").await["id"].as_str().unwrap().to_owned();

    // An earlier attempt created the distribution but its response was lost: create it
    // directly with the row's CallerReference, then let the worker run.
    let caller_reference: String =
        sqlx::query_scalar("select caller_reference from distributions where id = $1::uuid")
            .bind(&id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    let cloudfront = cloudfront_lifecycle::cloudfront::CloudFront::for_endpoint(
        &moto.endpoint,
        &Default::default(),
    );
    let spec: cloudfront_lifecycle::spec::DistributionSpec = serde_json::from_value(
        serde_json::json!({"origin": {"domain_name": "origin.example.com"}}),
    )
    .unwrap();
    let first = cloudfront
        .create(
            uuid::Uuid::parse_str(&id).unwrap(),
            &caller_reference,
            &spec,
        )
        .await
        .unwrap();
    sqlx::query("update distributions set create_attempted = true where id = $1::uuid")
        .bind(&id)
        .execute(&app.pool)
        .await
        .unwrap();

    let worker = cloudfront_lifecycle::worker::Worker::new(
        app.pool.clone(),
        cloudfront.clone(),
        crate::harness::fast_worker(),
    );
    worker.run_once().await.unwrap();

    let row = app
        .get(&id, "alice")
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(row["cloudfront"]["id"], first.id.as_str());
    let listed = cloudfront
        .client()
        .list_distributions()
        .send()
        .await
        .unwrap();
    assert_eq!(listed.distribution_list().unwrap().items().len(), 1);
    app.stop().await;
}
