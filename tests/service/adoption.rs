//! Adopting distributions made outside the API, and the account sweep.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use cloudfront_lifecycle::adopt::sweep::{Class, SweepOptions, sweep};
use cloudfront_lifecycle::cloudfront::{CallSettings, CloudFront, ROW_ID_TAG};
use cloudfront_lifecycle::simulator::{ExternalCreate, Tag};
use cloudfront_lifecycle::store::rate_limit::{BucketLimit, RateLimitSettings};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::{
    SECRET, TestApp, TestOptions, assert_problem, create_database, spawn_app, spawn_app_on,
};

const ADMIN_SCOPE: &str = "cloudfront-lifecycle:admin";

/// Signs an HS256 token for `sub` with these extra claims.
fn token_with(sub: &str, extra: Value) -> String {
    let mut claims = json!({"sub": sub, "exp": jsonwebtoken::get_current_timestamp() + 3600});
    claims
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn admin_token(sub: &str) -> String {
    token_with(sub, json!({"scope": format!("openid {ADMIN_SCOPE}")}))
}

async fn post_adopt(app: &TestApp, token: &str, body: Value) -> Response {
    app.client
        .post(format!("{}/v1/distributions/adopt", app.base_url))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn external(enabled: bool, comment: &str, age: Duration, tags: Vec<Tag>) -> ExternalCreate {
    ExternalCreate {
        enabled,
        comment: comment.to_owned(),
        age,
        tags,
        ..ExternalCreate::default()
    }
}

fn row_tag(row: Uuid) -> Vec<Tag> {
    vec![Tag {
        key: ROW_ID_TAG.to_owned(),
        value: Some(row.to_string()),
    }]
}

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

#[tokio::test]
async fn adopt_then_delete() {
    let app = spawn_app().await;
    let existing = app
        .simulator()
        .external_create(external(true, "made elsewhere", HOUR, Vec::new()))
        .unwrap();

    let response = post_adopt(
        &app,
        &admin_token("operator"),
        json!({"cloudfront_id": existing.id, "owner": "alice"}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let adopted: Value = response.json().await.unwrap();
    let id = adopted["id"].as_str().unwrap().to_owned();
    assert_eq!(adopted["status"], "deployed");
    assert_eq!(adopted["cloudfront"]["id"], existing.id.as_str());
    assert_eq!(adopted["config"]["comment"], "made elsewhere");
    let tags = app.simulator().distribution(&existing.id).unwrap().tags;
    assert!(tags.contains(&Tag {
        key: ROW_ID_TAG.to_owned(),
        value: Some(id.clone()),
    }));
    let caller_reference = sqlx::query_scalar::<_, String>(
        "select caller_reference from distributions where id = $1::uuid",
    )
    .bind(&id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(caller_reference, existing.caller_reference);
    let reason = sqlx::query_scalar::<_, String>(
        "select reason from distribution_events where distribution_id = $1::uuid",
    )
    .bind(&id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(reason, "adopted");

    let again = post_adopt(
        &app,
        &admin_token("operator"),
        json!({"cloudfront_id": existing.id}),
    )
    .await;
    let problem = assert_problem(again, StatusCode::CONFLICT, "conflict").await;
    assert!(problem["detail"].as_str().unwrap().contains(&id));

    assert_eq!(
        app.delete(&id, "alice").await.status(),
        StatusCode::ACCEPTED
    );
    app.wait_for_status(&id, "alice", "deleted", Duration::from_secs(30))
        .await;
    assert!(app.simulator().distribution(&existing.id).is_none());
}

#[tokio::test]
async fn adopt_disabled_is_retained() {
    let app = spawn_app().await;
    let existing = app
        .simulator()
        .external_create(external(false, "", HOUR, Vec::new()))
        .unwrap();

    // The scope may also come as a `permissions` array; the caller owns the row.
    let token = token_with("operator", json!({"permissions": [ADMIN_SCOPE]}));
    let response = post_adopt(&app, &token, json!({"cloudfront_id": existing.id})).await;

    assert_eq!(response.status(), StatusCode::CREATED);
    let adopted: Value = response.json().await.unwrap();
    assert_eq!(adopted["status"], "disabled");
    assert_eq!(adopted["deletion"]["retain"], true);
    let id = adopted["id"].as_str().unwrap();
    assert_eq!(app.get(id, "operator").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn adopt_unknown_id_is_404() {
    let app = spawn_app().await;
    let response = post_adopt(
        &app,
        &admin_token("operator"),
        json!({"cloudfront_id": "E0000NOSUCHID"}),
    )
    .await;
    assert_problem(response, StatusCode::NOT_FOUND, "not-found").await;
}

#[tokio::test]
async fn adopt_needs_admin_scope() {
    let app = spawn_app().await;
    let existing = app
        .simulator()
        .external_create(external(true, "", HOUR, Vec::new()))
        .unwrap();
    let body = json!({"cloudfront_id": existing.id});

    let user = post_adopt(&app, &app.token("alice"), body.clone()).await;
    assert_problem(user, StatusCode::FORBIDDEN, "forbidden").await;
    let other_scope = token_with("alice", json!({"scope": "cloudfront-lifecycle:read"}));
    let wrong = post_adopt(&app, &other_scope, body).await;
    assert_problem(wrong, StatusCode::FORBIDDEN, "forbidden").await;
    assert_eq!(app.count("select count(*) from distributions").await, 0);
}

/// The simulator's account for the sweep: what each distribution is and whether a sweep
/// with both selecting options must delete it.
struct Account {
    expected: HashMap<String, Class>,
    selected: HashSet<String>,
    enabled_unmanaged: HashSet<String>,
}

const MANAGED: usize = 10;
const ORPHANS: usize = 20;
const OLD_DISABLED: usize = 60;
const YOUNG_DISABLED: usize = 60;
const ENABLED_UNMANAGED: usize = 100;

async fn populate(app: &TestApp) -> Account {
    let mut account = Account {
        expected: HashMap::new(),
        selected: HashSet::new(),
        enabled_unmanaged: HashSet::new(),
    };
    let simulator = app.simulator();

    let mut rows = Vec::new();
    for _ in 0..MANAGED {
        rows.push(app.create("alice").await["id"].as_str().unwrap().to_owned());
    }
    for row in &rows {
        let deployed = app
            .wait_for_status(row, "alice", "deployed", Duration::from_secs(30))
            .await;
        let cloudfront_id = deployed["cloudfront"]["id"].as_str().unwrap().to_owned();
        account.expected.insert(cloudfront_id, Class::Managed);
    }

    for index in 0..ORPHANS {
        let existing = simulator
            .external_create(external(
                index % 2 == 0,
                "orphan",
                DAY,
                row_tag(Uuid::new_v4()),
            ))
            .unwrap();
        account.expected.insert(existing.id.clone(), Class::Orphan);
        account.selected.insert(existing.id);
    }
    for index in 0..OLD_DISABLED {
        let age = DAY * (31 + index as u32);
        let existing = simulator
            .external_create(external(false, "old backlog", age, Vec::new()))
            .unwrap();
        account
            .expected
            .insert(existing.id.clone(), Class::DisabledUnmanaged);
        account.selected.insert(existing.id);
    }
    for index in 0..YOUNG_DISABLED {
        let age = HOUR * (1 + index as u32);
        let existing = simulator
            .external_create(external(false, "recent backlog", age, Vec::new()))
            .unwrap();
        account
            .expected
            .insert(existing.id.clone(), Class::DisabledUnmanaged);
    }
    for index in 0..ENABLED_UNMANAGED {
        // Some are old, so age alone never selects an enabled distribution.
        let age = DAY * (index as u32 % 90);
        let existing = simulator
            .external_create(external(true, "someone else's", age, Vec::new()))
            .unwrap();
        account.expected.insert(existing.id.clone(), Class::Other);
        account.enabled_unmanaged.insert(existing.id);
    }
    account
}

fn options(adopt_orphans: bool, older_than: Option<Duration>) -> SweepOptions {
    SweepOptions {
        adopt_orphans,
        delete_disabled_older_than: older_than,
        owner: "sweep".to_owned(),
        tags: Vec::new(),
        comment_prefix: None,
        // Far above what the sweep sends, so the test measures correctness, not pacing.
        rate_limits: RateLimitSettings {
            mutating: BucketLimit {
                rate_per_second: 500.0,
                burst: 500.0,
            },
            read: BucketLimit {
                rate_per_second: 1000.0,
                burst: 1000.0,
            },
            ..RateLimitSettings::default()
        },
    }
}

/// Returns the distribution ids that received a mutating call after call `after`.
fn mutated_since(app: &TestApp, after: usize) -> HashSet<String> {
    app.simulator()
        .calls()
        .into_iter()
        .skip(after)
        .filter(|call| call.operation.is_mutating())
        .filter_map(|call| call.distribution_id)
        .collect()
}

/// Runs the real binary's dry run with `--json` against the simulator.
async fn sweep_binary_json(app: &TestApp, database_url: &str) -> Value {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_cloudfront-lifecycle"))
        .args(["admin", "sweep", "--json"])
        .env("CLOUDFRONT_BACKEND", "aws")
        .env(
            "AWS_ENDPOINT_URL",
            app.simulator_endpoint.as_deref().unwrap(),
        )
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "x")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("DATABASE_URL", database_url)
        .env("CLOUDFRONT_READ_RATE", "1000")
        .env("CLOUDFRONT_READ_BURST", "1000")
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "admin sweep failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test]
async fn sweep_cleans_backlog() {
    let database_url = create_database().await;
    let app = spawn_app_on(database_url.clone(), TestOptions::default()).await;
    let account = populate(&app).await;
    assert_eq!(app.simulator().distributions().len(), 250);
    let cloudfront = CloudFront::for_endpoint(
        app.simulator_endpoint.as_deref().unwrap(),
        &CallSettings::default(),
    );
    let rows_before = app.count("select count(*) from distributions").await;

    // Dry run, from the library and from the binary: every class right, nothing changed.
    let calls_before = app.simulator().calls().len();
    let report = sweep(&app.pool, &cloudfront, &options(false, None))
        .await
        .unwrap();
    assert!(report.dry_run);
    assert_eq!(report.entries.len(), 250);
    for entry in &report.entries {
        assert_eq!(
            Some(&entry.class),
            account.expected.get(&entry.cloudfront_id),
            "class of {}",
            entry.cloudfront_id
        );
    }
    assert_eq!(report.selected().count(), 0);
    let listed = app
        .simulator()
        .calls()
        .iter()
        .skip(calls_before)
        .filter(|call| format!("{:?}", call.operation) == "ListDistributions")
        .count();
    assert!(listed >= 3, "ListDistributions calls: {listed}");

    let json = sweep_binary_json(&app, &database_url).await;
    assert_eq!(json["dry_run"], true);
    let entries = json["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 250);
    for entry in entries {
        let id = entry["cloudfront_id"].as_str().unwrap();
        let expected = account.expected[id];
        assert_eq!(
            entry["class"],
            serde_json::to_value(expected).unwrap(),
            "class of {id}"
        );
    }
    assert!(mutated_since(&app, calls_before).is_empty());
    assert_eq!(
        app.count("select count(*) from distributions").await,
        rows_before
    );

    // The run with both options adopts and deletes exactly the selected ones.
    let calls_before = app.simulator().calls().len();
    let report = sweep(&app.pool, &cloudfront, &options(true, Some(DAY * 30)))
        .await
        .unwrap();
    assert!(!report.dry_run);
    assert_eq!(report.failed().count(), 0);
    let selected: HashSet<String> = report
        .selected()
        .map(|entry| entry.cloudfront_id.clone())
        .collect();
    assert_eq!(selected, account.selected);

    let deadline = Instant::now() + Duration::from_secs(60);
    let expected_deleted = account.selected.len() as i64;
    let deleted_sql =
        "select count(*) from distributions where owner = 'sweep' and status = 'deleted'";
    while app.count(deleted_sql).await < expected_deleted {
        assert!(
            Instant::now() < deadline,
            "only {} of {expected_deleted} swept distributions deleted in time",
            app.count(deleted_sql).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let remaining: HashSet<String> = app
        .simulator()
        .distributions()
        .into_iter()
        .map(|distribution| distribution.id)
        .collect();
    assert!(remaining.is_disjoint(&account.selected));
    assert_eq!(remaining.len(), 250 - account.selected.len());
    let mutated = mutated_since(&app, calls_before);
    assert!(mutated.is_disjoint(&account.enabled_unmanaged));
    assert!(mutated.is_subset(&account.selected));
    assert_eq!(
        app.count("select count(*) from distribution_events where reason = 'sweep'")
            .await,
        2 * expected_deleted
    );

    // A second run finds nothing more to do.
    let calls_before = app.simulator().calls().len();
    let report = sweep(&app.pool, &cloudfront, &options(true, Some(DAY * 30)))
        .await
        .unwrap();
    assert_eq!(report.selected().count(), 0);
    assert!(mutated_since(&app, calls_before).is_empty());
}
