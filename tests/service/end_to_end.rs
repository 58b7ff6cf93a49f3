//! Create and delete through the HTTP API, against the embedded simulator.

use std::time::Duration;

use cloudfront_lifecycle::simulator::{DistributionStatus, Operation};
use reqwest::{Method, StatusCode};

use crate::harness::spawn_app;

#[tokio::test]
async fn create_then_delete_ends_deleted() {
    let app = spawn_app().await;

    let created = app.create("alice").await;
    assert_eq!(created["status"], "creating");
    let id = created["id"].as_str().unwrap().to_owned();

    let deployed = app
        .wait_for_status(&id, "alice", "deployed", Duration::from_secs(15))
        .await;
    let cloudfront_id = deployed["cloudfront"]["id"].as_str().unwrap().to_owned();
    assert_eq!(deployed["cloudfront"]["status"], "Deployed");
    assert_eq!(app.simulator().distributions().len(), 1);

    let response = app.delete(&id, "alice").await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);

    let deleted = app
        .wait_for_status(&id, "alice", "deleted", Duration::from_secs(15))
        .await;
    assert!(deleted["deleted_at"].is_string());
    assert!(app.simulator().distributions().is_empty());

    // The history shows every step, in order.
    let statuses: Vec<String> = sqlx::query_scalar(
        "select to_status from distribution_events where distribution_id = $1::uuid order by id",
    )
    .bind(&id)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(statuses.first().map(String::as_str), Some("creating"));
    assert!(statuses.iter().any(|status| status == "deploying"));
    assert!(statuses.iter().any(|status| status == "disabling"));
    assert!(statuses.iter().any(|status| status == "deleting"));
    assert_eq!(statuses.last().map(String::as_str), Some("deleted"));

    // No Delete ever reached the simulator while the distribution was enabled or InProgress.
    for call in app.simulator().calls() {
        if call.operation == Operation::DeleteDistribution {
            assert_eq!(
                call.distribution_id.as_deref(),
                Some(cloudfront_id.as_str())
            );
            assert_eq!(
                call.enabled,
                Some(false),
                "Delete sent while enabled: {call:?}"
            );
            assert_eq!(
                call.status,
                Some(DistributionStatus::Deployed),
                "Delete sent while InProgress: {call:?}"
            );
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn repeated_delete_is_harmless() {
    let app = spawn_app().await;
    let id = app.create("alice").await["id"].as_str().unwrap().to_owned();
    app.wait_for_status(&id, "alice", "deployed", Duration::from_secs(15))
        .await;

    for _ in 0..3 {
        assert_eq!(
            app.delete(&id, "alice").await.status(),
            StatusCode::ACCEPTED
        );
    }
    app.wait_for_status(&id, "alice", "deleted", Duration::from_secs(15))
        .await;
    assert_eq!(
        app.delete(&id, "alice").await.status(),
        StatusCode::ACCEPTED
    );
    assert!(app.simulator().distributions().is_empty());
    app.stop().await;
}

#[tokio::test]
async fn list_pages_newest_first() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(app.create("alice").await["id"].as_str().unwrap().to_owned());
    }
    app.create("bob").await;

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/v1/distributions?limit=2".to_owned();
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let page: serde_json::Value = app
            .request(Method::GET, &path, "alice")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for item in page["items"].as_array().unwrap() {
            seen.push(item["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids);
    app.stop().await;
}

#[tokio::test]
async fn readyz_reports_simulated_backend() {
    let app = spawn_app().await;
    let body: serde_json::Value = app
        .client
        .get(format!("{}/readyz", app.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["cloudfront_backend"], "simulator");
    assert_eq!(body["simulated"], true);

    let metrics = app
        .client
        .get(format!("{}/metrics", app.base_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("cloudfront_lifecycle_backend_info"));
    assert!(metrics.contains("simulated=\"true\""));
    app.stop().await;
}
