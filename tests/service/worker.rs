//! Claims, leases and fencing with real workers on one database.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use cloudfront_lifecycle::cloudfront::CloudFront;
use cloudfront_lifecycle::lifecycle::Status;
use cloudfront_lifecycle::store::claims::{self, WriteBack};
use cloudfront_lifecycle::worker::Worker;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

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

/// Builds a write-back that sets `status` and changes nothing else the API shows.
fn result_with_status(status: Status, reason: &str) -> WriteBack {
    WriteBack {
        status,
        reason: reason.to_owned(),
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
    }
}

/// The columns a write-back decides, as a test reads them back.
#[derive(Debug, PartialEq, sqlx::FromRow)]
struct RowState {
    status: String,
    version: i64,
    updated_at: chrono::DateTime<chrono::Utc>,
    last_error_code: Option<String>,
    next_check_at: Option<chrono::DateTime<chrono::Utc>>,
    events: i64,
    webhooks: i64,
}

async fn row_state(pool: &sqlx::PgPool, id: Uuid) -> RowState {
    sqlx::query_as(
        "select status, version, updated_at, last_error_code, next_check_at,
                (select count(*) from distribution_events where distribution_id = d.id) as events,
                (select count(*) from webhook_deliveries where distribution_id = d.id) as webhooks
         from distributions d where id = $1",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn create_and_claim(app: &crate::harness::TestApp, rows: usize) -> Vec<(Uuid, i64)> {
    for _ in 0..rows {
        app.create("alice").await;
    }
    let claimed = claims::claim(&app.pool, rows as i64, 60.0).await.unwrap();
    assert_eq!(claimed.len(), rows);
    claimed
        .iter()
        .map(|claimed| (claimed.row.id, claimed.row.lease_token))
        .collect()
}

#[tokio::test]
async fn batch_write_back_fences_each_row() {
    let app = spawn_app_with(api_only()).await;
    let rows = create_and_claim(&app, 3).await;
    let (failed_id, failed_token) = rows[0];
    let (stale_id, stale_token) = rows[1];
    let (recheck_id, recheck_token) = rows[2];
    let stale_before = row_state(&app.pool, stale_id).await;
    let recheck_before = row_state(&app.pool, recheck_id).await;
    let failed_before = row_state(&app.pool, failed_id).await;

    let failed = WriteBack {
        error: Some((
            "InvalidOrigin".to_owned(),
            "the origin does not resolve".to_owned(),
        )),
        ..result_with_status(Status::Failed, "CloudFront rejected the origin")
    };
    let stale = result_with_status(Status::Deployed, "from a lost lease");
    let recheck = WriteBack {
        next_check_in: Some(30.0),
        ..result_with_status(Status::Creating, "still creating")
    };
    let mut written = claims::write_back_many(
        &app.pool,
        &[
            (failed_id, failed_token, &failed),
            (stale_id, stale_token - 1, &stale),
            (recheck_id, recheck_token, &recheck),
        ],
    )
    .await
    .unwrap();
    written.sort();
    let mut expected = vec![failed_id, recheck_id];
    expected.sort();
    assert_eq!(written, expected);

    // The status change is visible: new version, history row, webhook delivery.
    let failed_after = row_state(&app.pool, failed_id).await;
    assert_eq!(failed_after.status, "failed");
    assert_eq!(
        failed_after.last_error_code.as_deref(),
        Some("InvalidOrigin")
    );
    assert_eq!(failed_after.version, failed_before.version + 1);
    assert!(failed_after.updated_at > failed_before.updated_at);
    assert_eq!(failed_after.next_check_at, None);
    assert_eq!(failed_after.events, failed_before.events + 1);
    assert_eq!(failed_after.webhooks, failed_before.webhooks + 1);
    let reason: String = sqlx::query_scalar(
        "select reason from distribution_events where distribution_id = $1 order by id desc limit 1",
    )
    .bind(failed_id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(reason, "CloudFront rejected the origin");
    let payload_status: String = sqlx::query_scalar(
        "select payload->'distribution'->>'status' from webhook_deliveries where distribution_id = $1",
    )
    .bind(failed_id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(payload_status, "failed");

    // The stale token wrote nothing.
    assert_eq!(row_state(&app.pool, stale_id).await, stale_before);

    // A recheck that learned nothing moves only the next check.
    let recheck_after = row_state(&app.pool, recheck_id).await;
    assert_eq!(recheck_after.status, "creating");
    assert_eq!(recheck_after.version, recheck_before.version);
    assert_eq!(recheck_after.updated_at, recheck_before.updated_at);
    assert_eq!(recheck_after.events, recheck_before.events);
    assert_ne!(recheck_after.next_check_at, recheck_before.next_check_at);
    app.stop().await;
}

#[tokio::test]
async fn write_back_queue_isolates_bad_row() {
    let app = spawn_app_with(api_only()).await;
    let rows = create_and_claim(&app, 8).await;
    let (bad_id, bad_token) = rows[0];
    let (stale_id, stale_token) = rows[1];
    let stale_before = row_state(&app.pool, stale_id).await;

    // Another live row already has this CloudFront id, so the unique index rejects the
    // bad row's write-back and with it any statement it shares.
    sqlx::query("update distributions set cloudfront_id = 'ETAKEN' where id = $1")
        .bind(rows[2].0)
        .execute(&app.pool)
        .await
        .unwrap();
    let cloudfront = CloudFront::for_endpoint(
        app.simulator_endpoint.as_deref().unwrap(),
        &Default::default(),
    );
    let worker = Worker::new(app.pool.clone(), cloudfront, fast_worker());

    let mut writes = tokio::task::JoinSet::new();
    for &(id, token) in &rows {
        let worker = worker.clone();
        let (token, update) = if id == bad_id {
            let update = WriteBack {
                cloudfront_id: Some("ETAKEN".to_owned()),
                ..result_with_status(Status::Deploying, "created")
            };
            (bad_token, update)
        } else if id == stale_id {
            (
                stale_token - 1,
                result_with_status(Status::Deploying, "stale"),
            )
        } else {
            (token, result_with_status(Status::Deploying, "created"))
        };
        writes.spawn(async move {
            let outcome = worker.context().write_backs.write(id, token, update).await;
            (id, outcome)
        });
    }

    while let Some(joined) = writes.join_next().await {
        let (id, outcome) = joined.unwrap();
        if id == bad_id {
            assert!(outcome.is_err(), "the duplicate CloudFront id was written");
        } else if id == stale_id {
            assert!(!outcome.unwrap(), "the stale token was written");
        } else {
            assert!(outcome.unwrap(), "row {id} was not written");
            assert_eq!(row_state(&app.pool, id).await.status, "deploying");
        }
    }
    assert_eq!(row_state(&app.pool, bad_id).await.status, "creating");
    assert_eq!(row_state(&app.pool, stale_id).await, stale_before);
    app.stop().await;
}
