//! CloudFront's known failures, each reproduced through the SDK against the simulator's fault
//! API: throttling, lost responses, stale ETags and reads, permanent rejections, races with
//! other actors, slow deploys, and a seeded random mix of all of them.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use cloudfront_lifecycle::cloudfront::{CallSettings, CloudFront, ROW_ID_TAG};
use cloudfront_lifecycle::lifecycle::Policy;
use cloudfront_lifecycle::simulator::{
    CallRecord, DeployTime, DistributionStatus, ExternalChange, ExternalCreate, InjectedError,
    LostResponse, LostResponseMode, Operation, RateLimit, RateLimits, StaleReads,
};
use cloudfront_lifecycle::store::claims;
use cloudfront_lifecycle::store::distributions::{self, Distribution};
use cloudfront_lifecycle::worker::{Worker, WorkerSettings, step};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::{TestApp, TestOptions, assert_problem, fast_worker, spawn_app_with};

const OWNER: &str = "alice";
const WAIT: Duration = Duration::from_secs(20);

fn call_settings() -> CallSettings {
    CallSettings {
        max_attempts: 1,
        attempt_timeout: Duration::from_secs(5),
        call_timeout: Duration::from_secs(10),
    }
}

/// Returns options for the API and simulator without a background worker, so the test drives
/// the worker.
fn driven() -> TestOptions {
    TestOptions {
        worker: None,
        ..TestOptions::default()
    }
}

fn with_worker(worker: WorkerSettings) -> TestOptions {
    TestOptions {
        worker: Some(worker),
        ..TestOptions::default()
    }
}

fn with_policy(policy: Policy) -> TestOptions {
    with_worker(WorkerSettings {
        policy,
        ..fast_worker()
    })
}

/// Builds a worker on the test app's simulator, for tests that run it one round at a time.
fn manual_worker(app: &TestApp) -> Worker {
    let cloudfront =
        CloudFront::for_endpoint(app.simulator_endpoint.as_deref().unwrap(), &call_settings());
    Worker::new(app.pool.clone(), cloudfront, fast_worker())
}

fn uuid(id: &str) -> Uuid {
    Uuid::parse_str(id).unwrap()
}

async fn row(app: &TestApp, id: &str) -> Distribution {
    distributions::get(&app.pool, uuid(id))
        .await
        .unwrap()
        .expect("the row exists")
}

/// Runs the worker round by round until the row reaches `status`.
async fn drive_until(app: &TestApp, worker: &Worker, id: &str, status: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        worker.run_once().await.unwrap();
        let resource: Value = app.get(id, OWNER).await.json().await.unwrap();
        if resource["status"] == status {
            return resource;
        }
        assert!(
            Instant::now() < deadline,
            "distribution {id} did not reach {status} within {WAIT:?}; last seen: {resource:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs the worker round by round until `done` holds for the row.
async fn drive_while(
    app: &TestApp,
    worker: &Worker,
    id: &str,
    what: &str,
    done: impl Fn(&Distribution) -> bool,
) -> Distribution {
    let deadline = Instant::now() + WAIT;
    loop {
        worker.run_once().await.unwrap();
        let current = row(app, id).await;
        if done(&current) {
            return current;
        }
        assert!(
            Instant::now() < deadline,
            "distribution {id}: {what} did not happen within {WAIT:?}; row: {current:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls until `condition` holds, failing after `WAIT` with `what`.
async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !condition().await {
        assert!(Instant::now() < deadline, "{what} within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn calls_of(app: &TestApp, operation: Operation) -> Vec<CallRecord> {
    app.simulator()
        .calls()
        .into_iter()
        .filter(|call| call.operation == operation)
        .collect()
}

fn inject(app: &TestApp, operation: Option<Operation>, count: u32, status: u16, code: &str) {
    app.simulator().inject_error(InjectedError {
        operation,
        count,
        status,
        code: code.to_owned(),
        message: format!("injected {code}"),
    });
}

/// Asserts that no DeleteDistribution reached CloudFront while the distribution was enabled
/// or still InProgress.
fn assert_no_premature_delete(app: &TestApp) {
    for call in calls_of(app, Operation::DeleteDistribution) {
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

async fn history_reasons(app: &TestApp, id: &str) -> Vec<String> {
    sqlx::query_scalar(
        "select reason from distribution_events where distribution_id = $1::uuid order by id",
    )
    .bind(id)
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

async fn delete_with(app: &TestApp, id: &str, query: &str) -> reqwest::Response {
    app.request(
        Method::DELETE,
        &format!("/v1/distributions/{id}{query}"),
        OWNER,
    )
    .send()
    .await
    .unwrap()
}

async fn retry(app: &TestApp, id: &str, owner: &str) -> reqwest::Response {
    app.request(
        Method::POST,
        &format!("/v1/distributions/{id}/retry"),
        owner,
    )
    .send()
    .await
    .unwrap()
}

/// Creates a distribution through the API and drives it to `deployed`; returns the row id
/// and the CloudFront id.
async fn deployed(app: &TestApp, worker: &Worker) -> (String, String) {
    let id = app.create(OWNER).await["id"].as_str().unwrap().to_owned();
    let resource = drive_until(app, worker, &id, "deployed").await;
    let cloudfront_id = resource["cloudfront"]["id"].as_str().unwrap().to_owned();
    (id, cloudfront_id)
}

async fn create_id(app: &TestApp) -> String {
    app.create(OWNER).await["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn disable_sent_before_crash_is_recognised() {
    let app = spawn_app_with(driven()).await;
    let worker = manual_worker(&app);
    let (id, cloudfront_id) = deployed(&app, &worker).await;

    // The user asked for deletion; a worker sent the disable and died before recording it.
    assert_eq!(app.delete(&id, OWNER).await.status(), StatusCode::ACCEPTED);
    app.simulator()
        .set_distribution_deploy_time(&cloudfront_id, DeployTime::Fixed(Duration::from_secs(1)))
        .unwrap();
    let cloudfront =
        CloudFront::for_endpoint(app.simulator_endpoint.as_deref().unwrap(), &call_settings());
    let current = cloudfront.get(&cloudfront_id).await.unwrap();
    cloudfront
        .disable(
            &cloudfront_id,
            &current.snapshot.etag,
            current.config.unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(row(&app, &id).await.status.as_str(), "deployed");

    drive_until(&app, &worker, &id, "deleted").await;

    assert_eq!(
        calls_of(&app, Operation::UpdateDistribution).len(),
        1,
        "the service sent a redundant disable"
    );
    assert_eq!(calls_of(&app, Operation::DeleteDistribution).len(), 1);
    assert_no_premature_delete(&app);
    assert!(app.simulator().distributions().is_empty());
    app.stop().await;
}

#[tokio::test]
async fn stale_etag_on_delete_is_reread() {
    for (status, code) in [(412, "PreconditionFailed"), (400, "InvalidIfMatchVersion")] {
        let app = spawn_app_with(TestOptions::default()).await;
        let id = create_id(&app).await;
        app.wait_for_status(&id, OWNER, "deployed", WAIT).await;
        inject(&app, Some(Operation::DeleteDistribution), 1, status, code);

        assert_eq!(app.delete(&id, OWNER).await.status(), StatusCode::ACCEPTED);
        app.wait_for_status(&id, OWNER, "deleted", WAIT).await;

        let calls = app.simulator().calls();
        let rejected = calls
            .iter()
            .position(|call| call.error_code.as_deref() == Some(code))
            .expect("the injected error was served");
        let next_delete = calls[rejected + 1..]
            .iter()
            .position(|call| call.operation == Operation::DeleteDistribution)
            .map(|offset| rejected + 1 + offset)
            .expect("the delete was retried");
        assert!(
            calls[rejected + 1..next_delete]
                .iter()
                .any(|call| call.operation == Operation::GetDistribution),
            "{code}: no fresh read between the rejected and the retried delete"
        );
        assert_eq!(calls[next_delete].http_status, 204, "{code}");
        assert_no_premature_delete(&app);
        assert!(app.simulator().distributions().is_empty(), "{code}");
        app.stop().await;
    }
}

#[tokio::test]
async fn etag_changed_before_delete_rechecks() {
    let app = spawn_app_with(driven()).await;
    let worker = manual_worker(&app);
    let (id, cloudfront_id) = deployed(&app, &worker).await;
    assert_eq!(app.delete(&id, OWNER).await.status(), StatusCode::ACCEPTED);
    drive_until(&app, &worker, &id, "disabling").await;

    // Another actor changes the disabled distribution after it deployed: a new ETag and a
    // new deploy. The service's next read must see both before any delete.
    let etag_before = app
        .simulator()
        .distribution(&cloudfront_id)
        .unwrap()
        .etag
        .clone();
    eventually("the disable deploys", || async {
        app.simulator().distribution(&cloudfront_id).unwrap().status == DistributionStatus::Deployed
    })
    .await;
    app.simulator()
        .external_change(
            &cloudfront_id,
            ExternalChange {
                comment: Some("edited by hand".to_owned()),
                ..ExternalChange::default()
            },
        )
        .unwrap();

    drive_until(&app, &worker, &id, "deleted").await;

    let deletes = calls_of(&app, Operation::DeleteDistribution);
    assert_eq!(deletes.len(), 1);
    assert_ne!(deletes[0].if_match.as_deref(), Some(etag_before.as_str()));
    assert_no_premature_delete(&app);
    app.stop().await;
}

#[tokio::test]
async fn concurrent_disable_loser_rereads() {
    let app = spawn_app_with(driven()).await;
    let worker = manual_worker(&app);
    let (id, cloudfront_id) = deployed(&app, &worker).await;
    assert_eq!(app.delete(&id, OWNER).await.status(), StatusCode::ACCEPTED);

    // Two replicas hold the same row (as if a lease were broken) and both read the same
    // ETag before either updates: latency keeps both reads in flight together. The long
    // deploy keeps the loser's re-read from finding it deletable at once.
    app.simulator()
        .set_distribution_deploy_time(&cloudfront_id, DeployTime::Fixed(Duration::from_secs(2)))
        .unwrap();
    app.simulator().set_latency(Duration::from_millis(300));
    let claimed = claims::claim(&app.pool, 1, 60.0).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let twin = claimed[0].clone();
    let context = worker.context();
    let (first, second) = tokio::join!(
        step::check(context, claimed[0].clone()),
        step::check(context, twin)
    );
    first.unwrap();
    second.unwrap();
    app.simulator().set_latency(Duration::ZERO);

    let updates = calls_of(&app, Operation::UpdateDistribution);
    assert_eq!(updates.len(), 2, "both replicas sent their update");
    let rejected = updates
        .iter()
        .filter(|call| call.error_code.as_deref() == Some("PreconditionFailed"))
        .count();
    assert_eq!(rejected, 1, "exactly one update lost the race");
    assert!(
        !app.simulator()
            .distribution(&cloudfront_id)
            .unwrap()
            .enabled
    );

    drive_until(&app, &worker, &id, "deleted").await;
    assert_eq!(
        calls_of(&app, Operation::UpdateDistribution).len(),
        2,
        "the loser sent another update after its re-read"
    );
    assert_no_premature_delete(&app);
    app.stop().await;
}

#[tokio::test]
async fn illegal_update_on_disable_fails() {
    for code in ["IllegalUpdate", "InvalidArgument"] {
        let app = spawn_app_with(TestOptions::default()).await;
        let id = create_id(&app).await;
        app.wait_for_status(&id, OWNER, "deployed", WAIT).await;
        inject(&app, Some(Operation::UpdateDistribution), 1, 400, code);

        app.delete(&id, OWNER).await;
        let failed = app.wait_for_status(&id, OWNER, "failed", WAIT).await;

        assert_eq!(failed["last_error"]["code"], code);
        assert_eq!(failed["last_error"]["message"], format!("injected {code}"));
        assert!(row(&app, &id).await.next_check_at.is_none(), "{code}");
        assert_eq!(
            calls_of(&app, Operation::UpdateDistribution).len(),
            1,
            "{code}"
        );
        assert!(calls_of(&app, Operation::DeleteDistribution).is_empty());
        app.stop().await;
    }
}

#[tokio::test]
async fn throttling_five_times_completes() {
    // Two failed attempts would fail the row, so this passes only if throttling is not one.
    let app = spawn_app_with(with_policy(Policy {
        max_attempts: 2,
        ..Policy::default()
    }))
    .await;
    inject(&app, None, 5, 400, "Throttling");

    let id = create_id(&app).await;
    app.wait_for_status(&id, OWNER, "deployed", WAIT).await;
    app.delete(&id, OWNER).await;
    let deleted = app.wait_for_status(&id, OWNER, "deleted", WAIT).await;

    let throttled = app
        .simulator()
        .calls()
        .iter()
        .filter(|call| call.error_code.as_deref() == Some("Throttling"))
        .count();
    assert_eq!(throttled, 5);
    assert!(deleted["last_error"].is_null());
    assert_eq!(row(&app, &id).await.failures, 0);
    assert_eq!(
        calls_of(&app, Operation::CreateDistributionWithTags).len(),
        6
    );
    app.stop().await;
}

#[tokio::test]
async fn sdk_retries_absorb_throttling() {
    let app = spawn_app_with(TestOptions {
        calls: CallSettings {
            max_attempts: 3,
            ..call_settings()
        },
        ..TestOptions::default()
    })
    .await;
    inject(
        &app,
        Some(Operation::CreateDistributionWithTags),
        2,
        400,
        "Throttling",
    );

    let id = create_id(&app).await;
    app.wait_for_status(&id, OWNER, "deployed", WAIT).await;

    assert_eq!(
        calls_of(&app, Operation::CreateDistributionWithTags).len(),
        3
    );
    assert_eq!(app.simulator().distributions().len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn caller_reference_reuse_adopts() {
    let app = spawn_app_with(driven()).await;
    let worker = manual_worker(&app);
    let id = create_id(&app).await;

    // An earlier attempt created the distribution, but its response never arrived.
    let reference = row(&app, &id).await.caller_reference;
    let existing = app
        .simulator()
        .external_create(ExternalCreate {
            caller_reference: Some(reference),
            enabled: true,
            ..ExternalCreate::default()
        })
        .unwrap();

    let resource = drive_until(&app, &worker, &id, "deployed").await;

    assert_eq!(resource["cloudfront"]["id"], existing.id.as_str());
    assert_eq!(app.simulator().distributions().len(), 1);
    let creates = calls_of(&app, Operation::CreateDistributionWithTags);
    assert_eq!(creates.len(), 1);
    assert_eq!(
        creates[0].error_code.as_deref(),
        Some("DistributionAlreadyExists")
    );
    app.stop().await;
}

#[tokio::test]
async fn lost_create_response_adopts() {
    for mode in [
        LostResponseMode::InternalError,
        LostResponseMode::DropConnection,
    ] {
        let app = spawn_app_with(TestOptions::default()).await;
        app.simulator().lose_responses(LostResponse {
            operation: Some(Operation::CreateDistributionWithTags),
            count: 1,
            mode,
        });

        let id = create_id(&app).await;
        let resource = app.wait_for_status(&id, OWNER, "deployed", WAIT).await;

        let distributions = app.simulator().distributions();
        assert_eq!(distributions.len(), 1, "{mode:?}");
        assert_eq!(resource["cloudfront"]["id"], distributions[0].id.as_str());
        let creates = calls_of(&app, Operation::CreateDistributionWithTags);
        assert_eq!(creates.len(), 2, "{mode:?}");
        assert_eq!(
            creates[1].error_code.as_deref(),
            Some("DistributionAlreadyExists"),
            "{mode:?}"
        );
        assert!(row(&app, &id).await.create_uncertain, "{mode:?}");
        app.stop().await;
    }
}

#[tokio::test]
async fn create_timeout_resolved_once() {
    let app = spawn_app_with(TestOptions {
        calls: CallSettings {
            max_attempts: 1,
            attempt_timeout: Duration::from_millis(500),
            call_timeout: Duration::from_secs(1),
        },
        ..TestOptions::default()
    })
    .await;
    app.simulator().set_latency(Duration::from_millis(1500));

    let id = create_id(&app).await;
    eventually("the create times out", || async {
        row(&app, &id).await.create_uncertain
    })
    .await;
    app.simulator().set_latency(Duration::ZERO);
    app.wait_for_status(&id, OWNER, "deployed", WAIT).await;

    assert_eq!(app.simulator().distributions().len(), 1);
    assert_eq!(
        row(&app, &id).await.last_error_code.as_deref(),
        Some("Timeout")
    );
    app.stop().await;
}

#[tokio::test]
async fn cname_conflict_fails_clearly() {
    let app = spawn_app_with(TestOptions::default()).await;
    app.simulator()
        .external_create(ExternalCreate {
            enabled: false,
            aliases: vec!["cdn.example.com".to_owned()],
            ..ExternalCreate::default()
        })
        .unwrap();

    let response = app
        .request(Method::POST, "/v1/distributions", OWNER)
        .json(&json!({
            "origin": {"domain_name": "origin.example.com"},
            "aliases": ["cdn.example.com"],
            "certificate_arn": "arn:aws:acm:us-east-1:123456789012:certificate/0b1c2d3e-aaaa-bbbb-cccc-0123456789ab",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let failed = app.wait_for_status(&id, OWNER, "failed", WAIT).await;

    assert_eq!(failed["last_error"]["code"], "CNAMEAlreadyExists");
    let message = failed["last_error"]["message"].as_str().unwrap();
    assert!(message.contains("cdn.example.com"), "message: {message}");
    assert_eq!(app.simulator().distributions().len(), 1);
    assert!(!row(&app, &id).await.create_attempted);

    // Nothing was made, so deleting it needs no CloudFront call.
    app.delete(&id, OWNER).await;
    app.wait_for_status(&id, OWNER, "deleted", WAIT).await;
    assert_eq!(app.simulator().calls().len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn delete_while_creating_leaves_nothing() {
    let app = spawn_app_with(driven()).await;
    let worker = manual_worker(&app);
    let id = create_id(&app).await;

    assert_eq!(app.delete(&id, OWNER).await.status(), StatusCode::ACCEPTED);
    let deleted = drive_until(&app, &worker, &id, "deleted").await;

    assert!(deleted["cloudfront"].is_null());
    assert!(app.simulator().calls().is_empty());
    app.stop().await;
}

#[tokio::test]
async fn delete_during_create_call_leaves_nothing() {
    let app = spawn_app_with(TestOptions::default()).await;
    app.simulator().set_latency(Duration::from_millis(500));
    let id = create_id(&app).await;

    // The create is on its way to CloudFront when the user deletes.
    eventually("the create is sent", || async {
        row(&app, &id).await.create_attempted
    })
    .await;
    assert_eq!(app.delete(&id, OWNER).await.status(), StatusCode::ACCEPTED);
    app.simulator().set_latency(Duration::ZERO);
    app.wait_for_status(&id, OWNER, "deleted", WAIT).await;

    // The delete makes the row due while the first create is still in flight, so a second
    // check may send the create again, and either may land first. A create that lands after
    // the row was deleted reopens it, so wait until every create has landed and the row is
    // deleted again.
    let creates_landed = Instant::now() + Duration::from_secs(3);
    while Instant::now() < creates_landed {
        let creates = calls_of(&app, Operation::CreateDistributionWithTags).len();
        if creates >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    eventually("the row is deleted and the simulator empty", || async {
        row(&app, &id).await.status == cloudfront_lifecycle::lifecycle::Status::Deleted
            && app.simulator().distributions().is_empty()
    })
    .await;
    assert!(app.simulator().distributions().is_empty());
    assert_no_premature_delete(&app);
    app.stop().await;
}

#[tokio::test]
async fn delete_after_lost_create_leaves_nothing() {
    let app = spawn_app_with(driven()).await;
    let worker = manual_worker(&app);
    app.simulator().lose_responses(LostResponse {
        operation: Some(Operation::CreateDistributionWithTags),
        count: 1,
        mode: LostResponseMode::DropConnection,
    });
    let id = create_id(&app).await;
    drive_while(&app, &worker, &id, "the create is lost", |row| {
        row.create_uncertain
    })
    .await;

    app.delete(&id, OWNER).await;
    drive_until(&app, &worker, &id, "deleted").await;

    assert!(app.simulator().distributions().is_empty());
    assert_no_premature_delete(&app);
    app.stop().await;
}

#[tokio::test]
async fn uncertain_create_survives_lost_lease() {
    let app = spawn_app_with(driven()).await;
    let worker = manual_worker(&app);
    let id = create_id(&app).await;

    // A check sends the create and the user deletes while it is in flight, so the check's
    // lease is gone by the time the create's response is lost.
    app.simulator().set_latency(Duration::from_millis(400));
    app.simulator().lose_responses(LostResponse {
        operation: Some(Operation::CreateDistributionWithTags),
        count: 1,
        mode: LostResponseMode::InternalError,
    });
    let claimed = claims::claim(&app.pool, 1, 60.0).await.unwrap().remove(0);
    let context = worker.context();
    let in_flight = step::check(context, claimed);
    let delete_meanwhile = async {
        eventually("the create is sent", || async {
            row(&app, &id).await.create_attempted
        })
        .await;
        app.delete(&id, OWNER).await.status()
    };
    let (outcome, status) = tokio::join!(in_flight, delete_meanwhile);
    outcome.unwrap();
    assert_eq!(status, StatusCode::ACCEPTED);
    app.simulator().set_latency(Duration::ZERO);

    // The next create is rejected: that proves nothing about the one whose response was lost.
    inject(
        &app,
        Some(Operation::CreateDistributionWithTags),
        1,
        403,
        "AccessDenied",
    );
    drive_until(&app, &worker, &id, "failed").await;
    assert!(row(&app, &id).await.create_attempted);

    app.delete(&id, OWNER).await;
    drive_until(&app, &worker, &id, "deleted").await;
    assert!(app.simulator().distributions().is_empty());
    assert_no_premature_delete(&app);
    app.stop().await;
}

#[tokio::test]
async fn late_create_after_deletion_is_deleted() {
    let app = spawn_app_with(driven()).await;
    let worker = manual_worker(&app);
    let id = create_id(&app).await;

    // A slow create is in flight when the user deletes; another check creates, disables and
    // deletes a distribution before the slow create lands and makes a second one.
    app.simulator().set_latency(Duration::from_secs(3));
    let claimed = claims::claim(&app.pool, 1, 60.0).await.unwrap().remove(0);
    let context = worker.context();
    let slow = step::check(context, claimed);
    let meanwhile = async {
        eventually("the slow create is sent", || async {
            row(&app, &id).await.create_attempted
        })
        .await;
        app.delete(&id, OWNER).await;
        app.simulator().set_latency(Duration::ZERO);
        drive_until(&app, &worker, &id, "deleted").await;
    };
    let (outcome, ()) = tokio::join!(slow, meanwhile);
    outcome.unwrap();
    assert_eq!(app.simulator().distributions().len(), 1);

    drive_until(&app, &worker, &id, "deleted").await;

    assert!(app.simulator().distributions().is_empty());
    let created = calls_of(&app, Operation::CreateDistributionWithTags)
        .into_iter()
        .filter(|call| call.http_status == 201)
        .count();
    assert_eq!(created, 2);
    let reasons = history_reasons(&app, &id).await;
    assert!(
        reasons
            .iter()
            .any(|reason| reason.contains("made another distribution")),
        "history: {reasons:?}"
    );
    assert_no_premature_delete(&app);
    app.stop().await;
}

#[tokio::test]
async fn delete_while_deploying_leaves_nothing() {
    let app = spawn_app_with(TestOptions {
        cloudfront: cloudfront_lifecycle::app::CloudFrontTarget::EmbeddedSimulator {
            deploy_time: Duration::from_secs(2),
        },
        ..TestOptions::default()
    })
    .await;
    let id = create_id(&app).await;
    app.wait_for_status(&id, OWNER, "deploying", WAIT).await;

    assert_eq!(app.delete(&id, OWNER).await.status(), StatusCode::ACCEPTED);
    app.wait_for_status(&id, OWNER, "deleted", Duration::from_secs(30))
        .await;

    assert!(app.simulator().distributions().is_empty());
    assert_eq!(calls_of(&app, Operation::UpdateDistribution).len(), 1);
    assert_no_premature_delete(&app);
    app.stop().await;
}

#[tokio::test]
async fn quota_exceeded_fails_without_storm() {
    let app = spawn_app_with(TestOptions::default()).await;
    for _ in 0..500 {
        app.simulator()
            .external_create(ExternalCreate::default())
            .unwrap();
    }

    let id = create_id(&app).await;
    let failed = app.wait_for_status(&id, OWNER, "failed", WAIT).await;

    assert_eq!(failed["last_error"]["code"], "TooManyDistributions");
    let message = failed["last_error"]["message"].as_str().unwrap();
    assert!(message.contains("500"), "the quota is not named: {message}");
    assert_eq!(
        calls_of(&app, Operation::CreateDistributionWithTags).len(),
        1
    );
    assert!(row(&app, &id).await.next_check_at.is_none());
    app.stop().await;
}

#[tokio::test]
async fn slow_disable_is_not_abandoned() {
    let app = spawn_app_with(with_worker(WorkerSettings {
        deletion_deadline: Duration::from_millis(500),
        ..fast_worker()
    }))
    .await;
    let id = create_id(&app).await;
    let resource = app.wait_for_status(&id, OWNER, "deployed", WAIT).await;
    let cloudfront_id = resource["cloudfront"]["id"].as_str().unwrap().to_owned();
    app.simulator()
        .set_distribution_deploy_time(&cloudfront_id, DeployTime::Fixed(Duration::from_secs(600)))
        .unwrap();

    app.delete(&id, OWNER).await;
    eventually("the deletion is reported overdue", || async {
        let resource: Value = app.get(&id, OWNER).await.json().await.unwrap();
        resource["deletion"]["overdue"] == true
    })
    .await;
    let reads_when_overdue = calls_of(&app, Operation::GetDistribution).len();
    eventually("checks continue after the deadline", || async {
        calls_of(&app, Operation::GetDistribution).len() >= reads_when_overdue + 3
    })
    .await;

    let resource: Value = app.get(&id, OWNER).await.json().await.unwrap();
    assert_eq!(resource["status"], "disabling");
    assert_eq!(resource["deletion"]["overdue"], true);
    assert!(resource["last_error"].is_null());
    assert!(row(&app, &id).await.next_check_at.is_some());
    assert_eq!(calls_of(&app, Operation::UpdateDistribution).len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn listing_follows_markers() {
    let app = spawn_app_with(driven()).await;
    for index in 0..250 {
        app.simulator()
            .external_create(ExternalCreate {
                comment: format!("listed {index}"),
                ..ExternalCreate::default()
            })
            .unwrap();
    }
    let cloudfront =
        CloudFront::for_endpoint(app.simulator_endpoint.as_deref().unwrap(), &call_settings());

    let summaries = cloudfront.list_all().await.unwrap();

    let listed: HashSet<String> = summaries.iter().map(|summary| summary.id.clone()).collect();
    let expected: HashSet<String> = app
        .simulator()
        .distributions()
        .into_iter()
        .map(|distribution| distribution.id)
        .collect();
    assert_eq!(summaries.len(), 250);
    assert_eq!(listed, expected);
    assert_eq!(calls_of(&app, Operation::ListDistributions).len(), 3);
    app.stop().await;
}

#[tokio::test]
async fn reenabled_during_deletion_fails() {
    let app = spawn_app_with(driven()).await;
    let worker = manual_worker(&app);
    let (id, cloudfront_id) = deployed(&app, &worker).await;
    app.simulator()
        .set_distribution_deploy_time(&cloudfront_id, DeployTime::Fixed(Duration::from_secs(2)))
        .unwrap();
    app.delete(&id, OWNER).await;
    drive_while(&app, &worker, &id, "the disable is sent", |row| {
        row.disable_confirmed
    })
    .await;

    // Someone turns it back on by hand while the disable deploys.
    app.simulator()
        .external_change(
            &cloudfront_id,
            ExternalChange {
                enabled: Some(true),
                ..ExternalChange::default()
            },
        )
        .unwrap();
    let failed = drive_until(&app, &worker, &id, "failed").await;

    assert_eq!(failed["last_error"]["code"], "DistributionReEnabled");
    assert!(
        app.simulator()
            .distribution(&cloudfront_id)
            .unwrap()
            .enabled
    );
    assert_eq!(calls_of(&app, Operation::UpdateDistribution).len(), 1);
    assert!(calls_of(&app, Operation::DeleteDistribution).is_empty());
    let reasons = history_reasons(&app, &id).await;
    assert_eq!(
        reasons.last().map(String::as_str),
        Some("re-enabled outside the service during deletion")
    );

    // The operator settles it: a retry disables and deletes it after all.
    assert_eq!(retry(&app, &id, OWNER).await.status(), StatusCode::ACCEPTED);
    drive_until(&app, &worker, &id, "deleted").await;
    assert!(app.simulator().distributions().is_empty());
    assert_no_premature_delete(&app);
    app.stop().await;
}

#[tokio::test]
async fn single_stale_read_is_confirmed() {
    let app = spawn_app_with(driven()).await;
    let worker = manual_worker(&app);
    let (id, cloudfront_id) = deployed(&app, &worker).await;
    app.simulator()
        .set_distribution_deploy_time(&cloudfront_id, DeployTime::Fixed(Duration::from_secs(1)))
        .unwrap();
    app.delete(&id, OWNER).await;
    drive_while(&app, &worker, &id, "the disable is sent", |row| {
        row.disable_confirmed
    })
    .await;

    // The next read returns the version before the disable: enabled.
    app.simulator().serve_stale_reads(StaleReads {
        distribution_id: Some(cloudfront_id.clone()),
        count: 1,
    });
    drive_until(&app, &worker, &id, "deleted").await;

    let reasons = history_reasons(&app, &id).await;
    assert!(
        !reasons.iter().any(|reason| reason.contains("re-enabled")),
        "one stale read failed the row: {reasons:?}"
    );
    assert_eq!(calls_of(&app, Operation::UpdateDistribution).len(), 1);
    assert!(app.simulator().distributions().is_empty());
    assert_no_premature_delete(&app);
    app.stop().await;
}

#[tokio::test]
async fn deleted_outside_is_recorded() {
    let app = spawn_app_with(TestOptions::default()).await;
    let id = create_id(&app).await;
    let resource = app.wait_for_status(&id, OWNER, "deployed", WAIT).await;
    let cloudfront_id = resource["cloudfront"]["id"].as_str().unwrap();
    app.simulator().external_delete(cloudfront_id).unwrap();

    app.delete(&id, OWNER).await;
    let deleted = app.wait_for_status(&id, OWNER, "deleted", WAIT).await;

    assert!(deleted["deleted_at"].is_string());
    let reasons = history_reasons(&app, &id).await;
    assert_eq!(
        reasons.last().map(String::as_str),
        Some("deleted outside the service")
    );
    assert!(calls_of(&app, Operation::UpdateDistribution).is_empty());
    assert!(calls_of(&app, Operation::DeleteDistribution).is_empty());
    app.stop().await;
}

#[tokio::test]
async fn lost_delete_response_ends_deleted() {
    for mode in [
        LostResponseMode::InternalError,
        LostResponseMode::DropConnection,
    ] {
        let app = spawn_app_with(TestOptions::default()).await;
        let id = create_id(&app).await;
        app.wait_for_status(&id, OWNER, "deployed", WAIT).await;
        app.simulator().lose_responses(LostResponse {
            operation: Some(Operation::DeleteDistribution),
            count: 1,
            mode,
        });

        app.delete(&id, OWNER).await;
        app.wait_for_status(&id, OWNER, "deleted", WAIT).await;

        assert!(app.simulator().distributions().is_empty(), "{mode:?}");
        let reasons = history_reasons(&app, &id).await;
        assert_eq!(
            reasons.last().map(String::as_str),
            Some("deleted"),
            "{mode:?}"
        );
        assert_no_premature_delete(&app);
        app.stop().await;
    }
}

#[tokio::test]
async fn lost_disable_response_is_not_repeated() {
    let app = spawn_app_with(TestOptions::default()).await;
    let id = create_id(&app).await;
    app.wait_for_status(&id, OWNER, "deployed", WAIT).await;
    app.simulator().lose_responses(LostResponse {
        operation: Some(Operation::UpdateDistribution),
        count: 1,
        mode: LostResponseMode::InternalError,
    });

    app.delete(&id, OWNER).await;
    app.wait_for_status(&id, OWNER, "deleted", WAIT).await;

    assert_eq!(calls_of(&app, Operation::UpdateDistribution).len(), 1);
    assert!(app.simulator().distributions().is_empty());
    assert_no_premature_delete(&app);
    app.stop().await;
}

#[tokio::test]
async fn transient_errors_are_retried() {
    for (status, code) in [
        (503, "ServiceUnavailable"),
        (500, "InternalError"),
        (408, "RequestTimeout"),
    ] {
        let app = spawn_app_with(TestOptions::default()).await;
        inject(&app, None, 3, status, code);

        let id = create_id(&app).await;
        let resource = app.wait_for_status(&id, OWNER, "deployed", WAIT).await;

        assert_eq!(resource["last_error"]["code"], code);
        assert_eq!(app.simulator().distributions().len(), 1, "{code}");
        assert_eq!(row(&app, &id).await.failures, 0, "{code}");
        app.stop().await;
    }
}

#[tokio::test]
async fn access_denied_then_retry_succeeds() {
    let app = spawn_app_with(TestOptions::default()).await;
    inject(
        &app,
        Some(Operation::CreateDistributionWithTags),
        1,
        403,
        "AccessDenied",
    );
    let id = create_id(&app).await;
    let failed = app.wait_for_status(&id, OWNER, "failed", WAIT).await;
    assert_eq!(failed["last_error"]["code"], "AccessDenied");
    assert_eq!(
        calls_of(&app, Operation::CreateDistributionWithTags).len(),
        1
    );

    // The IAM policy is fixed (the injected error is used up); the operator retries.
    let response = retry(&app, &id, OWNER).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "creating");
    app.wait_for_status(&id, OWNER, "deployed", WAIT).await;

    assert_eq!(app.simulator().distributions().len(), 1);
    let reasons = history_reasons(&app, &id).await;
    assert!(reasons.iter().any(|reason| reason == "retry requested"));
    app.stop().await;
}

#[tokio::test]
async fn rejected_create_delete_makes_no_call() {
    let app = spawn_app_with(TestOptions::default()).await;
    inject(
        &app,
        Some(Operation::CreateDistributionWithTags),
        1,
        403,
        "AccessDenied",
    );
    let id = create_id(&app).await;
    app.wait_for_status(&id, OWNER, "failed", WAIT).await;

    app.delete(&id, OWNER).await;
    app.wait_for_status(&id, OWNER, "deleted", WAIT).await;

    assert_eq!(app.simulator().calls().len(), 1);
    assert!(app.simulator().distributions().is_empty());
    app.stop().await;
}

#[tokio::test]
async fn invalid_viewer_certificate_retried_then_fails() {
    let app = spawn_app_with(with_policy(Policy {
        short_retry_attempts: 3,
        ..Policy::default()
    }))
    .await;
    inject(
        &app,
        Some(Operation::CreateDistributionWithTags),
        100,
        400,
        "InvalidViewerCertificate",
    );

    let id = create_id(&app).await;
    let failed = app.wait_for_status(&id, OWNER, "failed", WAIT).await;

    assert_eq!(failed["last_error"]["code"], "InvalidViewerCertificate");
    assert_eq!(
        calls_of(&app, Operation::CreateDistributionWithTags).len(),
        3
    );
    assert!(!row(&app, &id).await.create_attempted);
    app.stop().await;
}

#[tokio::test]
async fn retry_rejects_row_not_failed() {
    let app = spawn_app_with(driven()).await;
    let id = create_id(&app).await;

    let body = assert_problem(
        retry(&app, &id, OWNER).await,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains("creating"));
    assert_problem(
        retry(&app, &id, "mallory").await,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
    assert_problem(
        retry(&app, &Uuid::now_v7().to_string(), OWNER).await,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
    assert_eq!(row(&app, &id).await.status.as_str(), "creating");
    app.stop().await;
}

#[tokio::test]
async fn retain_ends_disabled() {
    let app = spawn_app_with(TestOptions::default()).await;
    let id = create_id(&app).await;
    let resource = app.wait_for_status(&id, OWNER, "deployed", WAIT).await;
    let cloudfront_id = resource["cloudfront"]["id"].as_str().unwrap().to_owned();

    let response = delete_with(&app, &id, "?retain=true").await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let disabled = app.wait_for_status(&id, OWNER, "disabled", WAIT).await;

    assert_eq!(disabled["deletion"]["retain"], true);
    let distribution = app.simulator().distribution(&cloudfront_id).unwrap();
    assert!(!distribution.enabled);
    assert_eq!(distribution.status, DistributionStatus::Deployed);
    assert!(calls_of(&app, Operation::DeleteDistribution).is_empty());
    assert!(row(&app, &id).await.next_check_at.is_none());
    app.stop().await;
}

/// Returns the seed of the randomized run: `FAULT_SEED` when set, else a fresh one.
fn fault_seed() -> u64 {
    match std::env::var("FAULT_SEED") {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("FAULT_SEED must be an unsigned integer, got {text:?}")),
        Err(_) => rand::random(),
    }
}

/// Arms one randomly chosen fault in the simulator.
async fn arm_random_fault(app: &TestApp, rng: &mut StdRng) {
    let simulator = app.simulator();
    let mut recorded: Vec<String> = sqlx::query_scalar(
        "select cloudfront_id from distributions where cloudfront_id is not null order by cloudfront_id",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    recorded.retain(|id| simulator.distribution(id).is_some());

    let operations = [
        Operation::CreateDistributionWithTags,
        Operation::GetDistribution,
        Operation::UpdateDistribution,
        Operation::DeleteDistribution,
    ];
    let operation = operations[rng.random_range(0..operations.len())];

    // Every error a CloudFront peer may really return. NoSuchDistribution and
    // DistributionAlreadyExists are left out because the service trusts them as facts.
    let errors: [(u16, &str); 11] = [
        (400, "Throttling"),
        (503, "ServiceUnavailable"),
        (500, "InternalError"),
        (408, "RequestTimeout"),
        (412, "PreconditionFailed"),
        (400, "InvalidIfMatchVersion"),
        (409, "DistributionNotDisabled"),
        (403, "AccessDenied"),
        (400, "IllegalUpdate"),
        (400, "InvalidViewerCertificate"),
        (400, "TooManyDistributions"),
    ];

    match rng.random_range(0..6) {
        0 | 1 => {
            let (status, code) = errors[rng.random_range(0..errors.len())];
            inject(app, Some(operation), rng.random_range(1..=3), status, code);
        }
        2 => simulator.lose_responses(LostResponse {
            operation: Some(operation),
            count: rng.random_range(1..=2),
            mode: if rng.random_bool(0.5) {
                LostResponseMode::InternalError
            } else {
                LostResponseMode::DropConnection
            },
        }),
        3 => simulator.serve_stale_reads(StaleReads {
            distribution_id: None,
            count: rng.random_range(1..=2),
        }),
        4 => simulator.set_latency(Duration::from_millis(rng.random_range(0..150))),
        _ => {
            // Either a tight mutating rate limit, or an outside deletion of a distribution
            // the service has recorded (drift).
            if rng.random_bool(0.5) || recorded.is_empty() {
                simulator.set_rate_limits(RateLimits {
                    mutating: Some(RateLimit {
                        rate_per_second: 5.0,
                        burst: 3,
                    }),
                    read: None,
                });
            } else {
                let victim = &recorded[rng.random_range(0..recorded.len())];
                // Only a distribution whose row recorded its id: one still unknown to its row
                // would be created again, which CloudFront allows once the first is gone.
                simulator.external_delete(victim).unwrap();
            }
        }
    }
}

#[tokio::test]
async fn randomized_faults_reach_quiescence() {
    let seed = fault_seed();
    println!("randomized_faults_reach_quiescence: FAULT_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let app = spawn_app_with(with_worker(WorkerSettings {
        policy: Policy {
            max_attempts: 4,
            short_retry_attempts: 2,
            ..Policy::default()
        },
        ..fast_worker()
    }))
    .await;
    app.simulator().set_deploy_time(DeployTime::Random {
        min: Duration::from_millis(50),
        median: Duration::from_millis(200),
        max: Duration::from_millis(1500),
        seed,
    });

    // Phase one: user actions and faults, interleaved at random.
    let mut ids: Vec<String> = Vec::new();
    for _ in 0..200 {
        match rng.random_range(0..10) {
            0..=2 if ids.len() < 40 => ids.push(create_id(&app).await),
            3 | 4 if !ids.is_empty() => {
                let id = &ids[rng.random_range(0..ids.len())];
                let query = if rng.random_bool(0.2) {
                    "?retain=true"
                } else {
                    ""
                };
                let status = delete_with(&app, id, query).await.status();
                assert_eq!(status, StatusCode::ACCEPTED, "seed {seed}: delete {id}");
            }
            5 if !ids.is_empty() => {
                let id = &ids[rng.random_range(0..ids.len())];
                let status = retry(&app, id, OWNER).await.status();
                assert!(
                    status == StatusCode::ACCEPTED || status == StatusCode::CONFLICT,
                    "seed {seed}: retry {id} answered {status}"
                );
            }
            _ => arm_random_fault(&app, &mut rng).await,
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(10..80))).await;
    }

    // Phase two: faults cleared, failed rows retried or deleted until nothing is left to do.
    app.simulator().clear_faults();
    app.simulator()
        .set_deploy_time(DeployTime::Fixed(Duration::from_millis(100)));
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut handled_failures: HashMap<String, u32> = HashMap::new();
    loop {
        let mut quiet = true;
        for id in &ids {
            let current = row(&app, id).await;
            if current.next_check_at.is_some() {
                quiet = false;
            }
            if current.status.as_str() == "failed" {
                quiet = false;
                let handled = handled_failures.entry(id.clone()).or_default();
                *handled += 1;
                assert!(
                    *handled <= 5,
                    "seed {seed}: {id} keeps failing with faults cleared: {current:?}"
                );
                if rng.random_bool(0.5) {
                    let status = retry(&app, id, OWNER).await.status();
                    assert_eq!(status, StatusCode::ACCEPTED, "seed {seed}: retry {id}");
                } else {
                    let status = app.delete(id, OWNER).await.status();
                    assert_eq!(status, StatusCode::ACCEPTED, "seed {seed}: delete {id}");
                }
            }
        }
        if quiet {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "seed {seed}: no quiescence within 40 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let failed_calls = app
        .simulator()
        .calls()
        .iter()
        .filter(|call| call.error_code.is_some() || call.response_lost.is_some())
        .count();
    println!(
        "seed {seed}: {} rows, {} calls, {failed_calls} failed or lost, {} failed rows handled",
        ids.len(),
        app.simulator().calls().len(),
        handled_failures.values().sum::<u32>()
    );

    let rows = {
        let mut rows = Vec::new();
        for id in &ids {
            rows.push(row(&app, id).await);
        }
        rows
    };
    let simulated = app.simulator().distributions();

    // Every deleted row has no distribution left in CloudFront.
    for row in rows.iter().filter(|row| row.status.as_str() == "deleted") {
        let row_id = row.id.to_string();
        let left = simulated.iter().find(|distribution| {
            Some(&distribution.id) == row.cloudfront_id.as_ref()
                || distribution
                    .tags
                    .iter()
                    .any(|tag| tag.key == ROW_ID_TAG && tag.value.as_deref() == Some(&row_id))
        });
        let history = if left.is_some() {
            let reasons = history_reasons(&app, &row_id).await;
            let calls: Vec<String> = app
                .simulator()
                .calls()
                .into_iter()
                .filter(|call| call.distribution_id == left.map(|d| d.id.clone()))
                .map(|call| format!("{call:?}"))
                .collect();
            format!("history {reasons:?}; row {row:?}; calls {calls:#?}")
        } else {
            String::new()
        };
        assert!(
            left.is_none(),
            "seed {seed}: deleted row {} still has {left:?}; {history}",
            row.id
        );
    }

    // Every distribution in CloudFront belongs to exactly one live row, by tag and by id.
    for distribution in &simulated {
        let owners: Vec<&Distribution> = rows
            .iter()
            .filter(|row| {
                row.status.as_str() != "deleted"
                    && row.cloudfront_id.as_deref() == Some(distribution.id.as_str())
            })
            .collect();
        assert_eq!(
            owners.len(),
            1,
            "seed {seed}: {} has {} live rows",
            distribution.id,
            owners.len()
        );
        let tagged = distribution
            .tags
            .iter()
            .find(|tag| tag.key == ROW_ID_TAG)
            .and_then(|tag| tag.value.clone());
        assert_eq!(
            tagged,
            Some(owners[0].id.to_string()),
            "seed {seed}: {} is tagged for another row",
            distribution.id
        );
        assert_eq!(
            distribution.caller_reference, owners[0].caller_reference,
            "seed {seed}: {} has another row's CallerReference",
            distribution.id
        );
    }

    // No Delete reached CloudFront while enabled or InProgress. A delete with a stale ETag
    // (after a stale read) is left out: CloudFront rejects it before looking at the state.
    let calls = app.simulator().calls();
    for call in calls.iter().filter(|call| {
        call.operation == Operation::DeleteDistribution
            && call.error_code.as_deref() != Some("PreconditionFailed")
            && call.enabled.is_some()
    }) {
        assert_eq!(
            call.enabled,
            Some(false),
            "seed {seed}: Delete sent while enabled: {call:?}"
        );
        assert_eq!(
            call.status,
            Some(DistributionStatus::Deployed),
            "seed {seed}: Delete sent while InProgress: {call:?}"
        );
    }

    // No CallerReference made two distributions: every successful create made the
    // distribution its row recorded, and no row made more than one.
    let created: Vec<String> = calls
        .iter()
        .filter(|call| call.operation == Operation::CreateDistributionWithTags)
        .filter(|call| call.http_status == 201)
        .filter_map(|call| call.distribution_id.clone())
        .collect();
    let recorded: HashSet<&str> = rows
        .iter()
        .filter_map(|row| row.cloudfront_id.as_deref())
        .collect();
    for cloudfront_id in &created {
        assert!(
            recorded.contains(cloudfront_id.as_str()),
            "seed {seed}: created {cloudfront_id} belongs to no row"
        );
    }
    let distinct: HashSet<&String> = created.iter().collect();
    assert_eq!(
        distinct.len(),
        created.len(),
        "seed {seed}: one distribution reported created twice"
    );
    app.stop().await;
}
