//! The worker's budget-aware claim: how many rows it takes for the tokens in the shared
//! buckets, in which order, and that the idle loop still wakes when work appears.

use std::time::{Duration, Instant};

use cloudfront_lifecycle::cloudfront::CloudFront;
use cloudfront_lifecycle::store::claims::{self, ClaimRequest, Claimed};
use cloudfront_lifecycle::store::rate_limit::{Bucket, BucketLimit, RateLimitSettings};
use cloudfront_lifecycle::worker::{Worker, WorkerSettings};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::harness::{TestOptions, fast_worker, spawn_app_with};

fn api_only() -> TestOptions {
    TestOptions {
        worker: None,
        ..TestOptions::default()
    }
}

/// Buckets that refill so slowly that a claim finds only the tokens the test put there.
fn slow_buckets() -> RateLimitSettings {
    RateLimitSettings {
        mutating: BucketLimit {
            rate_per_second: 0.001,
            burst: 100.0,
        },
        read: BucketLimit {
            rate_per_second: 0.001,
            burst: 100.0,
        },
        ..RateLimitSettings::default()
    }
}

/// Sets the tokens of a bucket now, at the slow rate of [`slow_buckets`].
async fn set_tokens(pool: &PgPool, bucket: &str, tokens: f64) {
    sqlx::query(
        "update cloudfront_rate_limits set tokens = $2, refilled_at = now(), rate = 0.001 \
         where bucket = $1",
    )
    .bind(bucket)
    .bind(tokens)
    .execute(pool)
    .await
    .unwrap();
}

async fn tokens_left(pool: &PgPool, bucket: &str) -> f64 {
    sqlx::query_scalar("select tokens from cloudfront_rate_limits where bucket = $1")
        .bind(bucket)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Inserts a row named by its caller reference, which the assertions use. A
/// `cloudfront_id` makes it start with a read. `waiting_seconds` puts it in a wait for
/// Deployed that began that long ago, and it came due `due_seconds_ago` seconds ago.
async fn insert_row(
    pool: &PgPool,
    name: &str,
    status: &str,
    intent: &str,
    cloudfront_id: Option<&str>,
    waiting_seconds: Option<f64>,
    due_seconds_ago: f64,
) {
    sqlx::query(
        r#"
        insert into distributions (id, owner, spec, status, intent, caller_reference,
                                   create_attempted, cloudfront_id, waiting_since, next_check_at)
        values (gen_random_uuid(), 'alice', '{"origin": {"domain_name": "origin.example.com"}}',
                $1, $2, $3, $4 is not null, $4,
                now() - make_interval(secs => $5), now() - make_interval(secs => $6))
        "#,
    )
    .bind(status)
    .bind(intent)
    .bind(name)
    .bind(cloudfront_id)
    .bind(waiting_seconds)
    .bind(due_seconds_ago)
    .execute(pool)
    .await
    .unwrap();
}

/// Returns every row's name, due time and lease token, in name order.
async fn snapshot(pool: &PgPool) -> Vec<(String, Option<chrono::DateTime<chrono::Utc>>, i64)> {
    sqlx::query_as(
        "select caller_reference, next_check_at, lease_token from distributions \
         order by caller_reference",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

fn names(claimed: &[Claimed]) -> Vec<String> {
    let mut names: Vec<String> = claimed
        .iter()
        .map(|claim| claim.row.caller_reference.clone())
        .collect();
    names.sort();
    names
}

async fn claim(
    pool: &PgPool,
    limit: usize,
    settings: &RateLimitSettings,
    prioritize: bool,
) -> Vec<Claimed> {
    claims::claim_within_budget(
        pool,
        &ClaimRequest {
            limit,
            lease_seconds: 60.0,
            rate_limits: settings,
            prioritize_waits: prioritize,
        },
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn budget_claim_leaves_unclaimed_rows_untouched() {
    let app = spawn_app_with(api_only()).await;
    let pool = &app.pool;
    for index in 0..8 {
        let name = format!("read-{index}");
        let cloudfront_id = format!("EREAD{index}");
        let due_ago = 100.0 - index as f64;
        insert_row(
            pool,
            &name,
            "deployed",
            "delete",
            Some(&cloudfront_id),
            None,
            due_ago,
        )
        .await;
    }
    insert_row(pool, "create-0", "creating", "keep", None, None, 50.0).await;
    insert_row(pool, "create-1", "creating", "keep", None, None, 49.0).await;
    // Deleted before any create was sent: it needs no call, so no token.
    insert_row(pool, "settle-0", "creating", "delete", None, None, 48.0).await;
    set_tokens(pool, "read", 3.5).await;
    set_tokens(pool, "mutating", 1.2).await;
    let before = snapshot(pool).await;

    let settings = slow_buckets();
    let claimed = claim(pool, 16, &settings, false).await;

    assert_eq!(
        names(&claimed),
        ["create-0", "read-0", "read-1", "read-2", "settle-0"],
        "the claim took rows beyond the tokens, or not the first due"
    );
    for claim in &claimed {
        let expected = match claim.row.caller_reference.as_str() {
            name if name.starts_with("read") => Some(Bucket::Read),
            name if name.starts_with("create") => Some(Bucket::Mutating),
            _ => None,
        };
        assert_eq!(
            claim.token, expected,
            "token of {}",
            claim.row.caller_reference
        );
    }
    let read_left = tokens_left(pool, "read").await;
    assert!(
        read_left < 1.0,
        "{read_left} read tokens left after taking 3 of 3.5"
    );
    assert!(
        read_left >= 0.0,
        "{read_left} read tokens left: more taken than there were"
    );
    let mutating_left = tokens_left(pool, "mutating").await;
    assert!(
        mutating_left < 1.0,
        "{mutating_left} mutating tokens left after taking 1 of 1.2"
    );
    assert!(mutating_left >= 0.0, "{mutating_left} mutating tokens left");

    let claimed_names = names(&claimed);
    let after = snapshot(pool).await;
    for (old, new) in before.iter().zip(&after) {
        if claimed_names.contains(&old.0) {
            continue;
        }
        assert_eq!(old, new, "an unclaimed row was changed");
    }

    // With the buckets empty, nothing more is claimed and the probe reports a later time.
    let again = claim(pool, 16, &settings, false).await;
    assert!(
        again.is_empty(),
        "claimed {:?} without tokens",
        names(&again)
    );
    let outlook = claims::outlook(pool, &settings).await.unwrap();
    let due_in = outlook.seconds_until_claimable().unwrap();
    assert!(
        due_in > 1.0,
        "the probe calls a row claimable in {due_in} s without tokens"
    );
    app.stop().await;
}

#[tokio::test]
async fn scarce_reads_favor_longest_waits_adaptive() {
    let app = spawn_app_with(api_only()).await;
    let pool = &app.pool;
    // First reads came due earliest; the waits came due later, the oldest wait last.
    for index in 0..4 {
        let name = format!("first-{index}");
        let cloudfront_id = format!("EFIRST{index}");
        insert_row(
            pool,
            &name,
            "deployed",
            "delete",
            Some(&cloudfront_id),
            None,
            100.0,
        )
        .await;
    }
    for (index, waited) in [(0, 100.0), (1, 400.0), (2, 300.0), (3, 200.0)] {
        let name = format!("wait-{index}");
        let cloudfront_id = format!("EWAIT{index}");
        let due_ago = 50.0 - index as f64;
        insert_row(
            pool,
            &name,
            "disabling",
            "delete",
            Some(&cloudfront_id),
            Some(waited),
            due_ago,
        )
        .await;
    }
    let settings = slow_buckets();

    // Under the adaptive schedule, two tokens go to the two longest waits.
    set_tokens(pool, "read", 2.0).await;
    let claimed = claim(pool, 8, &settings, true).await;
    assert_eq!(names(&claimed), ["wait-1", "wait-2"]);

    // A fixed schedule keeps the due order: first reads first.
    set_tokens(pool, "read", 2.0).await;
    let claimed = claim(pool, 8, &settings, false).await;
    assert_eq!(names(&claimed), ["first-0", "first-1"]);
    app.stop().await;
}

#[tokio::test]
async fn plentiful_reads_keep_due_order() {
    let app = spawn_app_with(api_only()).await;
    let pool = &app.pool;
    insert_row(
        pool,
        "first-0",
        "deployed",
        "delete",
        Some("EFIRST0"),
        None,
        100.0,
    )
    .await;
    insert_row(
        pool,
        "wait-0",
        "disabling",
        "delete",
        Some("EWAIT0"),
        Some(900.0),
        10.0,
    )
    .await;
    set_tokens(pool, "read", 50.0).await;

    // Enough tokens for every free slot: the adaptive claim needs no priority order.
    let claimed = claim(pool, 1, &slow_buckets(), true).await;
    assert_eq!(names(&claimed), ["first-0"]);
    app.stop().await;
}

#[tokio::test]
async fn unlimited_buckets_are_not_touched() {
    let app = spawn_app_with(api_only()).await;
    let pool = &app.pool;
    for index in 0..5 {
        let name = format!("read-{index}");
        let cloudfront_id = format!("EREAD{index}");
        insert_row(
            pool,
            &name,
            "deployed",
            "delete",
            Some(&cloudfront_id),
            None,
            1.0,
        )
        .await;
    }
    let unlimited = BucketLimit {
        rate_per_second: 1_000_000.0,
        burst: 1_000_000.0,
    };
    let settings = RateLimitSettings {
        mutating: unlimited,
        read: unlimited,
        ..RateLimitSettings::default()
    };
    let before: (f64, chrono::DateTime<chrono::Utc>) = sqlx::query_as(
        "select tokens, refilled_at from cloudfront_rate_limits where bucket = 'read'",
    )
    .fetch_one(pool)
    .await
    .unwrap();

    let claimed = claim(pool, 16, &settings, true).await;
    assert_eq!(claimed.len(), 5);

    let after: (f64, chrono::DateTime<chrono::Utc>) = sqlx::query_as(
        "select tokens, refilled_at from cloudfront_rate_limits where bucket = 'read'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(
        before, after,
        "the claim took tokens from an unlimited bucket"
    );
    app.stop().await;
}

#[tokio::test]
async fn idle_loop_wakes_on_notify_and_due_time() {
    let app = spawn_app_with(api_only()).await;
    let cloudfront = CloudFront::for_endpoint(
        app.simulator_endpoint.as_deref().unwrap(),
        &Default::default(),
    );
    // A safety interval far longer than the test: only a notification or a known due time
    // can wake the worker.
    let settings = WorkerSettings {
        safety_interval: Duration::from_secs(600),
        ..fast_worker()
    };
    let stop = CancellationToken::new();
    let running =
        tokio::spawn(Worker::new(app.pool.clone(), cloudfront, settings).run(stop.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The API's NOTIFY wakes the worker. The simulator keeps the create InProgress for
    // 300 ms, so reaching deployed also takes a recheck, which the worker must pick up at
    // its due time while it sleeps.
    let started = Instant::now();
    let id = app.create("alice").await["id"].as_str().unwrap().to_owned();
    app.wait_for_status(&id, "alice", "deployed", Duration::from_secs(10))
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the row took {:?} to deploy",
        started.elapsed()
    );

    // The delete notifies as well, and the deletion then runs through its wait for the
    // disable on due times alone.
    let response = app.delete(&id, "alice").await;
    assert_eq!(response.status(), reqwest::StatusCode::ACCEPTED);
    app.wait_for_status(&id, "alice", "deleted", Duration::from_secs(15))
        .await;

    stop.cancel();
    running.await.unwrap().unwrap();
    app.stop().await;
}
