//! Claims, leases and fencing with real workers on one database.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use cloudfront_lifecycle::cloudfront::CloudFront;
use cloudfront_lifecycle::lifecycle::Status;
use cloudfront_lifecycle::store::claims::{self, WriteBack};
use cloudfront_lifecycle::worker::Worker;
use tokio_util::sync::CancellationToken;

use crate::harness::{TestOptions, fast_worker, spawn_app_with};

fn api_only() -> TestOptions {
    TestOptions {
        worker: None,
        ..TestOptions::default()
    }
}

#[tokio::test]
async fn dead_worker_row_finished_after_lease() {
    let app = spawn_app_with(api_only()).await;
    let id = app.create("alice").await["id"].as_str().unwrap().to_owned();

    // A worker claims the row with a one-second lease and dies without writing back.
    let claimed = claims::claim(&app.pool, 10, 1.0).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let dead_token = claimed[0].row.lease_token;
    let claimed_at = Instant::now();

    // Another worker finishes it, but only once the lease has run out.
    let cloudfront = CloudFront::for_endpoint(
        app.simulator_endpoint.as_deref().unwrap(),
        &Default::default(),
    );
    let live = Worker::new(app.pool.clone(), cloudfront, fast_worker());
    let stop = CancellationToken::new();
    let running = tokio::spawn(live.run(stop.clone()));

    app.wait_for_status(&id, "alice", "deployed", Duration::from_secs(15))
        .await;
    assert!(
        claimed_at.elapsed() >= Duration::from_millis(900),
        "the row was taken before its lease ended"
    );
    assert_eq!(app.simulator().distributions().len(), 1);

    // The dead worker wakes up and writes back what it would have decided: rejected.
    let stale = WriteBack {
        status: Status::Failed,
        reason: "stale".to_owned(),
        cloudfront_id: None,
        arn: None,
        domain_name: None,
        etag: None,
        cloudfront_status: None,
        cloudfront_enabled: None,
        next_check_in: None,
        failures: 9,
        checks: 0,
        wait_started: false,
        disable_confirmed: false,
        enabled_reads: 0,
        error: Some(("Stale".to_owned(), "from a dead worker".to_owned())),
        overdue: false,
        create_attempted: false,
        applied_spec_version: None,
        update_etag: None,
    };
    let uuid = uuid::Uuid::parse_str(&id).unwrap();
    let written = claims::write_back(&app.pool, uuid, dead_token, &stale)
        .await
        .unwrap();
    assert!(!written);

    let row = app
        .get(&id, "alice")
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(row["status"], "deployed");
    assert!(row["last_error"].is_null());

    stop.cancel();
    running.await.unwrap().unwrap();
    app.stop().await;
}

#[tokio::test]
async fn concurrent_claims_are_disjoint() {
    let app = spawn_app_with(api_only()).await;
    for _ in 0..40 {
        app.create("alice").await;
    }

    let mut tasks = Vec::new();
    for _ in 0..4 {
        let pool = app.pool.clone();
        tasks.push(tokio::spawn(async move {
            claims::claim(&pool, 15, 60.0).await.unwrap()
        }));
    }
    let mut seen = HashSet::new();
    let mut total = 0;
    for task in tasks {
        for claimed in task.await.unwrap() {
            total += 1;
            assert!(
                seen.insert(claimed.row.id),
                "row {} claimed twice",
                claimed.row.id
            );
        }
    }
    assert_eq!(total, 40);

    // Everything is leased: nothing more is due.
    assert!(
        claims::claim(&app.pool, 100, 60.0)
            .await
            .unwrap()
            .is_empty()
    );
    app.stop().await;
}

#[tokio::test]
async fn delete_bumps_lease_token() {
    let app = spawn_app_with(api_only()).await;
    let id = app.create("alice").await["id"].as_str().unwrap().to_owned();
    let claimed = claims::claim(&app.pool, 1, 60.0).await.unwrap();
    let token = claimed[0].row.lease_token;

    // The user asks for deletion while a check is in flight: the check's write-back must not
    // overwrite that intent.
    assert_eq!(
        app.delete(&id, "alice").await.status(),
        reqwest::StatusCode::ACCEPTED
    );
    let mut update = WriteBack {
        status: Status::Deployed,
        reason: "in-flight check".to_owned(),
        cloudfront_id: None,
        arn: None,
        domain_name: None,
        etag: None,
        cloudfront_status: None,
        cloudfront_enabled: None,
        next_check_in: None,
        failures: 0,
        checks: 0,
        wait_started: false,
        disable_confirmed: false,
        enabled_reads: 0,
        error: None,
        overdue: false,
        create_attempted: false,
        applied_spec_version: None,
        update_etag: None,
    };
    let uuid = uuid::Uuid::parse_str(&id).unwrap();
    assert!(
        !claims::write_back(&app.pool, uuid, token, &update)
            .await
            .unwrap()
    );
    update.status = Status::Creating;
    let due: bool =
        sqlx::query_scalar("select next_check_at <= now() from distributions where id = $1::uuid")
            .bind(&id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(due, "the delete request makes the row due at once");
    app.stop().await;
}
