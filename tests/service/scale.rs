//! Several replicas on one database: crashes, fencing, the shared CloudFront rate limit,
//! idle cost, shutdown and the claim's query plan. Worker replicas run as child processes
//! of the real binary, so `kill -9` and SIGTERM are real.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use cloudfront_lifecycle::app::CloudFrontTarget;
use cloudfront_lifecycle::cloudfront::CloudFront;
use cloudfront_lifecycle::simulator::{
    DeployTime, DistributionStatus, ExternalCreate, InjectedError, Operation, RateLimit,
    RateLimits, Simulator, SimulatorServer, SimulatorSettings,
};
use cloudfront_lifecycle::store::claims;
use cloudfront_lifecycle::worker::step::{self, Outcome};
use cloudfront_lifecycle::worker::{Worker, WorkerSettings};
use futures::StreamExt;
use serde_json::Value;
use sqlx::{Connection, PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::harness::{TestApp, TestOptions, create_database, fast_worker, spawn_app_on};

const BINARY: &str = env!("CARGO_BIN_EXE_cloudfront-lifecycle");

/// Starts a standalone simulator on a loopback port.
async fn start_simulator(deploy_time: Duration) -> (Simulator, SimulatorServer) {
    let simulator = Simulator::new(SimulatorSettings {
        deploy_time: DeployTime::Fixed(deploy_time),
        ..SimulatorSettings::default()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = simulator.spawn(listener).await.unwrap();
    (simulator, server)
}

/// Starts the API alone on `database_url`, sending CloudFront calls to `endpoint`.
async fn start_api(database_url: &str, endpoint: &str) -> TestApp {
    spawn_app_on(
        database_url.to_owned(),
        TestOptions {
            cloudfront: CloudFrontTarget::Endpoint(endpoint.to_owned()),
            worker: None,
            ..TestOptions::default()
        },
    )
    .await
}

/// Starts `cloudfront-lifecycle worker` against the simulator at `endpoint`, with fast
/// schedule settings; `settings` adds or overrides environment variables.
fn spawn_worker(database_url: &str, endpoint: &str, settings: &[(&str, &str)]) -> Child {
    let mut command = Command::new(BINARY);
    command
        .arg("worker")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", database_url)
        .env("DATABASE_MAX_CONNECTIONS", "8")
        .env("CLOUDFRONT_BACKEND", "aws")
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        // The credentials come from the environment; never probe an instance metadata service.
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RECHECK_SCHEDULE", "backoff:0.2,1.5,1")
        .env("WORKER_SAFETY_INTERVAL_SECONDS", "1")
        .env("WORKER_LEASE_SECONDS", "10")
        .env("CLOUDFRONT_ATTEMPT_TIMEOUT_SECONDS", "2")
        .env("CLOUDFRONT_CALL_TIMEOUT_SECONDS", "4")
        .env("CLOUDFRONT_RATE_MAX_WAIT_SECONDS", "2")
        .env(
            "RUST_LOG",
            std::env::var("SCALE_WORKER_LOG").unwrap_or("error".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    if std::env::var("SCALE_WORKER_LOG").is_err() {
        command.stderr(Stdio::null());
    }
    for (name, value) in settings {
        command.env(name, value);
    }
    command
        .spawn()
        .expect("the cloudfront-lifecycle binary starts")
}

/// Waits for a child process to exit, failing after `timeout`.
async fn wait_for_exit(child: &mut Child, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "worker {} did not exit within {timeout:?}",
            child.id()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `sql` (a count) until it returns `expected`, failing after `timeout`.
async fn wait_for_count(pool: &PgPool, sql: &str, expected: i64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let mut last = -1;
    while Instant::now() < deadline {
        last = sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(pool)
            .await
            .unwrap();
        if last == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{sql} returned {last}, not {expected}, within {timeout:?}");
}

/// Drops a test database once its pool is closed, to give back its disk space.
async fn drop_database(database_url: &str) {
    let admin_url = std::env::var("TEST_DATABASE_URL").unwrap();
    let name = database_url.rsplit_once('/').unwrap().1;
    let mut admin = PgConnection::connect(&admin_url).await.unwrap();
    sqlx::query(&format!("drop database if exists {name} with (force)"))
        .execute(&mut admin)
        .await
        .unwrap();
}

/// Creates `count` rows through the API, a few requests at a time, and returns their ids.
async fn create_many(app: &TestApp, count: usize) -> Vec<String> {
    futures::stream::iter(0..count)
        .map(|_| async { app.create("alice").await["id"].as_str().unwrap().to_owned() })
        .buffer_unordered(8)
        .collect()
        .await
}

/// Deletes every id through the API, a few requests at a time.
async fn delete_many(app: &TestApp, ids: &[String]) {
    futures::stream::iter(ids)
        .for_each_concurrent(8, |id| async move {
            let status = app.delete(id, "alice").await.status();
            assert_eq!(status, reqwest::StatusCode::ACCEPTED, "deleting {id}");
        })
        .await;
}

#[tokio::test]
async fn chaos_with_killed_workers() {
    let count: usize = std::env::var("CHAOS_DISTRIBUTIONS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(200);
    let (simulator, server) = start_simulator(Duration::from_millis(800)).await;
    let endpoint = server.endpoint();
    // CloudFront throttles above 25 mutating calls per second while the workers aim for 30,
    // so the shared rate must adapt. A little latency keeps calls in flight when a worker dies.
    simulator.set_rate_limits(RateLimits {
        mutating: Some(RateLimit {
            rate_per_second: 25.0,
            burst: 10,
        }),
        read: None,
    });
    simulator.set_latency(Duration::from_millis(15));
    let database_url = create_database().await;
    let app = start_api(&database_url, &endpoint).await;

    let worker_settings = [
        ("WORKER_LEASE_SECONDS", "5"),
        ("CLOUDFRONT_ATTEMPT_TIMEOUT_SECONDS", "1"),
        ("CLOUDFRONT_CALL_TIMEOUT_SECONDS", "2"),
        ("CLOUDFRONT_RATE_MAX_WAIT_SECONDS", "1"),
        ("CLOUDFRONT_MUTATING_RATE", "30"),
        ("CLOUDFRONT_MUTATING_BURST", "5"),
        ("CLOUDFRONT_READ_RATE", "200"),
        ("CLOUDFRONT_READ_BURST", "50"),
        ("CLOUDFRONT_RATE_RECOVERY_SECONDS", "10"),
    ];
    let mut workers: Vec<Child> = (0..3)
        .map(|_| spawn_worker(&database_url, &endpoint, &worker_settings))
        .collect();

    // Kill a random worker at random moments, restart it, and inject a 5xx each time.
    let stop_chaos = CancellationToken::new();
    let chaos = {
        let stop = stop_chaos.clone();
        let simulator = simulator.clone();
        let database_url = database_url.clone();
        let endpoint = endpoint.clone();
        tokio::spawn(async move {
            let mut kills = 0;
            while !stop.is_cancelled() {
                let pause = Duration::from_millis(1500 + rand::random_range(0..2500));
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(pause) => {}
                }
                let victim = rand::random_range(0..workers.len());
                workers[victim].kill().unwrap();
                workers[victim].wait().unwrap();
                workers[victim] = spawn_worker(&database_url, &endpoint, &worker_settings);
                kills += 1;
                simulator.inject_error(InjectedError {
                    operation: None,
                    count: 1,
                    status: 503,
                    code: "ServiceUnavailable".to_owned(),
                    message: "Please try again".to_owned(),
                });
            }
            (workers, kills)
        })
    };

    let deadline = Duration::from_secs(240);
    let ids = create_many(&app, count).await;
    wait_for_count(
        &app.pool,
        "select count(*) from distributions where status = 'deployed'",
        count as i64,
        deadline,
    )
    .await;
    delete_many(&app, &ids).await;
    wait_for_count(
        &app.pool,
        "select count(*) from distributions where status = 'deleted'",
        count as i64,
        deadline,
    )
    .await;

    stop_chaos.cancel();
    let (mut workers, kills) = chaos.await.unwrap();
    for worker in &mut workers {
        worker.kill().unwrap();
        worker.wait().unwrap();
    }
    assert!(kills >= 3, "only {kills} workers were killed");

    let still_due = app
        .count("select count(*) from distributions where next_check_at is not null")
        .await;
    assert_eq!(
        still_due, 0,
        "rows still queued after every row was deleted"
    );
    assert_eq!(simulator.distributions().len(), 0);

    let calls = simulator.calls();
    let created: Vec<&str> = calls
        .iter()
        .filter(|call| call.operation == Operation::CreateDistributionWithTags)
        .filter(|call| call.http_status == 201)
        .filter_map(|call| call.distribution_id.as_deref())
        .collect();
    assert_eq!(created.len(), count, "distributions created");
    let distinct: HashSet<&str> = created.iter().copied().collect();
    assert_eq!(distinct.len(), count, "distinct distributions created");
    let owned: Vec<String> = sqlx::query_scalar(
        "select distinct cloudfront_id from distributions where cloudfront_id is not null",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(owned.len(), count, "rows with their own CloudFront id");
    for cloudfront_id in &owned {
        assert!(
            distinct.contains(cloudfront_id.as_str()),
            "{cloudfront_id} was not created by a successful call"
        );
    }

    let premature: Vec<_> = calls
        .iter()
        .filter(|call| call.operation == Operation::DeleteDistribution)
        .filter(|call| {
            call.enabled == Some(true) || call.status == Some(DistributionStatus::InProgress)
        })
        .collect();
    assert!(
        premature.is_empty(),
        "DeleteDistribution sent while Enabled or InProgress: {premature:#?}"
    );

    app.stop().await;
    server.shutdown().await;
    drop_database(&database_url).await;
}

#[tokio::test]
async fn stale_worker_write_is_rejected() {
    let database_url = create_database().await;
    let app = spawn_app_on(
        database_url.clone(),
        TestOptions {
            worker: None,
            ..TestOptions::default()
        },
    )
    .await;
    let cloudfront = CloudFront::for_endpoint(
        app.simulator_endpoint.as_deref().unwrap(),
        &Default::default(),
    );
    let live = Worker::new(app.pool.clone(), cloudfront.clone(), fast_worker());
    let id = app.create("alice").await["id"].as_str().unwrap().to_owned();
    assert_eq!(live.run_once().await.unwrap(), 1, "the new row was not due");

    // Once the distribution exists, a worker claims it with a one-second lease and
    // pauses past it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let stale = loop {
        if let Some(claimed) = claims::claim(&app.pool, 1, 1.0).await.unwrap().pop() {
            break claimed;
        }
        assert!(Instant::now() < deadline, "the row never came due again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        stale.row.cloudfront_id.is_some(),
        "the row was not created yet"
    );

    // Meanwhile the user deletes the row and a live worker finishes the deletion.
    assert_eq!(
        app.delete(&id, "alice").await.status(),
        reqwest::StatusCode::ACCEPTED
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        live.run_once().await.unwrap();
        let status: String =
            sqlx::query_scalar("select status from distributions where id = $1::uuid")
                .bind(&id)
                .fetch_one(&app.pool)
                .await
                .unwrap();
        if status == "deleted" {
            break;
        }
        assert!(Instant::now() < deadline, "the row was not deleted in time");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let row_sql = "select to_jsonb(d) from distributions d where id = $1::uuid";
    let before: Value = sqlx::query_scalar(row_sql)
        .bind(&id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let events_before = app.count("select count(*) from distribution_events").await;

    // The paused worker resumes: it reads CloudFront, finds nothing, and writes back.
    let stale_worker = Worker::new(app.pool.clone(), cloudfront, fast_worker());
    let outcome = step::check(stale_worker.context(), stale).await.unwrap();
    assert_eq!(outcome, Outcome::LeaseLost);

    let after: Value = sqlx::query_scalar(row_sql)
        .bind(&id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(after, before, "the stale write-back changed the row");
    let events_after = app.count("select count(*) from distribution_events").await;
    assert_eq!(
        events_after, events_before,
        "the stale check recorded history"
    );

    app.stop().await;
    drop_database(&database_url).await;
}

#[tokio::test]
async fn rate_limit_shared_by_replicas() {
    const CLOUDFRONT_RATE: f64 = 10.0;
    const CLOUDFRONT_BURST: u32 = 5;
    const ROWS: usize = 100;
    let (simulator, server) = start_simulator(Duration::from_millis(500)).await;
    let endpoint = server.endpoint();
    let database_url = create_database().await;
    let app = start_api(&database_url, &endpoint).await;

    // 100 deployed distributions and their rows, made directly so the set-up costs no calls.
    for index in 0..ROWS {
        let distribution = simulator
            .external_create(ExternalCreate {
                enabled: true,
                age: Duration::from_secs(60),
                ..ExternalCreate::default()
            })
            .unwrap();
        sqlx::query(
            r#"
            insert into distributions
                (id, owner, spec, status, caller_reference, create_attempted, cloudfront_id,
                 arn, domain_name)
            values (gen_random_uuid(), 'alice',
                    '{"origin": {"domain_name": "origin.example.com"}}', 'deployed', $1, true,
                    $2, $3, $4)
            "#,
        )
        .bind(format!("rate-{index}"))
        .bind(&distribution.id)
        .bind(&distribution.arn)
        .bind(&distribution.domain_name)
        .execute(&app.pool)
        .await
        .unwrap();
    }
    simulator.set_rate_limits(RateLimits {
        mutating: Some(RateLimit {
            rate_per_second: CLOUDFRONT_RATE,
            burst: CLOUDFRONT_BURST,
        }),
        read: None,
    });

    let worker_settings = [
        ("WORKER_LEASE_SECONDS", "30"),
        ("CLOUDFRONT_MUTATING_RATE", "8"),
        ("CLOUDFRONT_MUTATING_BURST", "2"),
        ("CLOUDFRONT_READ_RATE", "100"),
        ("CLOUDFRONT_READ_BURST", "20"),
        ("CLOUDFRONT_RATE_MAX_WAIT_SECONDS", "10"),
    ];
    let mut workers: Vec<Child> = (0..3)
        .map(|_| spawn_worker(&database_url, &endpoint, &worker_settings))
        .collect();

    // Every deletion comes due at the same moment.
    sqlx::query(
        "update distributions set intent = 'delete', delete_requested_at = now(), \
         next_check_at = now(), lease_token = lease_token + 1",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    wait_for_count(
        &app.pool,
        "select count(*) from distributions where status = 'deleted'",
        ROWS as i64,
        Duration::from_secs(150),
    )
    .await;
    for worker in &mut workers {
        worker.kill().unwrap();
        worker.wait().unwrap();
    }

    let calls = simulator.calls();
    let mutating: Vec<_> = calls
        .iter()
        .filter(|call| call.operation.is_mutating())
        .map(|call| call.time)
        .collect();
    let mut busiest_second = 0;
    for (start, time) in mutating.iter().enumerate() {
        let window_end = *time + chrono::Duration::seconds(1);
        let in_window = mutating[start..]
            .iter()
            .take_while(|later| **later < window_end)
            .count();
        busiest_second = busiest_second.max(in_window);
    }
    let allowed = CLOUDFRONT_RATE as usize + CLOUDFRONT_BURST as usize;
    assert!(
        busiest_second <= allowed,
        "{busiest_second} mutating calls in one second; CloudFront allows {allowed}"
    );
    let throttled = calls
        .iter()
        .filter(|call| call.error_code.as_deref() == Some("Throttling"))
        .count();
    assert!(throttled <= 5, "{throttled} calls were throttled");
    assert_eq!(simulator.distributions().len(), 0);

    app.stop().await;
    server.shutdown().await;
    drop_database(&database_url).await;
}

/// Statement counts in the test database, by query text, when pg_stat_statements is
/// loaded; `None` otherwise.
async fn statement_counts(connection: &mut PgConnection) -> Option<HashMap<String, i64>> {
    let preloaded: String =
        sqlx::query_scalar("select current_setting('shared_preload_libraries')")
            .fetch_one(&mut *connection)
            .await
            .unwrap();
    if !preloaded.contains("pg_stat_statements") {
        return None;
    }
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "select query, calls from pg_stat_statements \
         where dbid = (select oid from pg_database where datname = current_database()) \
           and query not like '%pg_stat%' and query not like '%pg_database%' \
           and query not like '%current_setting%'",
    )
    .fetch_all(&mut *connection)
    .await
    .unwrap();
    Some(rows.into_iter().collect())
}

/// Table and index scans so far in the test database, per table, as the cumulative
/// statistics report them (each backend reports within about a second of going idle).
async fn table_scans(connection: &mut PgConnection) -> HashMap<String, i64> {
    sqlx::query("select pg_stat_clear_snapshot()")
        .execute(&mut *connection)
        .await
        .unwrap();
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "select relname::text, coalesce(seq_scan, 0) + coalesce(idx_scan, 0) \
         from pg_stat_user_tables",
    )
    .fetch_all(&mut *connection)
    .await
    .unwrap();
    rows.into_iter().collect()
}

#[tokio::test]
async fn idle_worker_only_probes() {
    const SAFETY: Duration = Duration::from_secs(2);
    const WINDOW: Duration = Duration::from_secs(10);
    let database_url = create_database().await;
    let app = spawn_app_on(
        database_url.clone(),
        TestOptions {
            worker: None,
            ..TestOptions::default()
        },
    )
    .await;
    let mut observer = PgConnection::connect(&database_url).await.unwrap();
    let preloaded: String =
        sqlx::query_scalar("select current_setting('shared_preload_libraries')")
            .fetch_one(&mut observer)
            .await
            .unwrap();
    if preloaded.contains("pg_stat_statements") {
        sqlx::query("create extension if not exists pg_stat_statements")
            .execute(&mut observer)
            .await
            .unwrap();
    }

    let cloudfront = CloudFront::for_endpoint(
        app.simulator_endpoint.as_deref().unwrap(),
        &Default::default(),
    );
    let worker_pool = PgPool::connect(&database_url).await.unwrap();
    let settings = WorkerSettings {
        safety_interval: SAFETY,
        ..fast_worker()
    };
    let stop = CancellationToken::new();
    let running = tokio::spawn(
        Worker::new(worker_pool.clone(), cloudfront.clone(), settings).run(stop.clone()),
    );

    // Let the worker settle into its sleep and the statistics catch up: a backend that
    // cannot flush them at once retries after up to 10 seconds idle (Postgres 15).
    tokio::time::sleep(Duration::from_secs(11)).await;
    let statements_before = statement_counts(&mut observer).await;
    let scans_before = table_scans(&mut observer).await;
    tokio::time::sleep(WINDOW).await;
    let statements_after = statement_counts(&mut observer).await;
    // Backends report their statistics up to a second after going idle.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let scans_after = table_scans(&mut observer).await;

    // Each safety interval (jittered by up to 10%) costs one probe, and nothing is claimed.
    let most_intervals = (WINDOW.as_secs_f64() / (SAFETY.as_secs_f64() * 0.9)).ceil() as i64 + 1;
    match (statements_before, statements_after) {
        (Some(before), Some(after)) => {
            let mut claims_run = 0;
            let mut probes_run = 0;
            for (query, calls) in &after {
                let delta = calls - before.get(query).copied().unwrap_or(0);
                if delta == 0 {
                    continue;
                }
                if query.contains("for update skip locked") {
                    claims_run += delta;
                } else if query.contains("min(next_check_at)") {
                    probes_run += delta;
                } else {
                    panic!("the idle worker ran {delta} x {query}");
                }
            }
            assert_eq!(claims_run, 0, "{claims_run} claims while idle");
            assert!(
                probes_run <= most_intervals,
                "{probes_run} probes while idle"
            );
            assert!(
                probes_run >= 3,
                "only {probes_run} probes: the safety interval did not fire"
            );
        }
        _ => {
            // Without pg_stat_statements, count scans: each probe makes two scans of the due
            // indexes and reads both token rows; nothing else may touch any table.
            for (table, scans) in &scans_after {
                let delta = scans - scans_before.get(table).copied().unwrap_or(0);
                if table == "distributions" || table == "cloudfront_rate_limits" {
                    assert!(
                        delta <= 2 * most_intervals,
                        "{delta} scans of {table} while idle"
                    );
                } else {
                    assert_eq!(delta, 0, "{table} was scanned while idle");
                }
                if table == "distributions" {
                    assert!(
                        delta >= 6,
                        "only {delta} scans: the safety interval did not fire"
                    );
                }
            }
        }
    }
    stop.cancel();
    running.await.unwrap().unwrap();

    // A worker whose safety interval is a minute is woken by the API's notification.
    let settings = WorkerSettings {
        safety_interval: Duration::from_secs(60),
        ..fast_worker()
    };
    let stop = CancellationToken::new();
    let running =
        tokio::spawn(Worker::new(worker_pool.clone(), cloudfront, settings).run(stop.clone()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let id = app.create("alice").await["id"].as_str().unwrap().to_owned();
    let recorded = Instant::now();
    loop {
        let claimed: bool =
            sqlx::query_scalar("select lease_token > 0 from distributions where id = $1::uuid")
                .bind(&id)
                .fetch_one(&app.pool)
                .await
                .unwrap();
        if claimed {
            break;
        }
        assert!(
            recorded.elapsed() < Duration::from_secs(1),
            "the worker was not woken within a second of the new row"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    running.await.unwrap().unwrap();

    worker_pool.close().await;
    observer.close().await.unwrap();
    app.stop().await;
    drop_database(&database_url).await;
}

#[tokio::test]
async fn sigterm_releases_in_flight_row() {
    let (simulator, server) = start_simulator(Duration::from_millis(500)).await;
    let endpoint = server.endpoint();
    let database_url = create_database().await;
    let app = start_api(&database_url, &endpoint).await;
    simulator.set_latency(Duration::from_secs(3));

    let mut worker = spawn_worker(
        &database_url,
        &endpoint,
        &[
            ("WORKER_LEASE_SECONDS", "60"),
            ("CLOUDFRONT_ATTEMPT_TIMEOUT_SECONDS", "10"),
            ("CLOUDFRONT_CALL_TIMEOUT_SECONDS", "20"),
            ("SHUTDOWN_TIMEOUT_SECONDS", "0.5"),
        ],
    );
    let id = app.create("alice").await["id"].as_str().unwrap().to_owned();

    // The create call is in flight once the row records that it was attempted.
    wait_for_count(
        &app.pool,
        "select count(*) from distributions where create_attempted",
        1,
        Duration::from_secs(30),
    )
    .await;
    let token_in_flight: i64 =
        sqlx::query_scalar("select lease_token from distributions where id = $1::uuid")
            .bind(&id)
            .fetch_one(&app.pool)
            .await
            .unwrap();

    let kill = Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = wait_for_exit(&mut worker, Duration::from_secs(20)).await;
    assert!(status.success(), "worker exited with {status}");

    let (due_now, lease_token): (bool, i64) = sqlx::query_as(
        "select next_check_at <= now(), lease_token from distributions where id = $1::uuid",
    )
    .bind(&id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(due_now, "the in-flight row was not handed back");
    assert!(
        lease_token > token_in_flight,
        "the lease was not ended: a late write-back could still land"
    );

    app.stop().await;
    server.shutdown().await;
    drop_database(&database_url).await;
}

#[tokio::test]
async fn claim_plan_uses_due_index() {
    let database_url = create_database().await;
    let app = spawn_app_on(
        database_url.clone(),
        TestOptions {
            worker: None,
            ..TestOptions::default()
        },
    )
    .await;

    // A million rows: 95% finished (not queued), 4% waiting, 1% due now.
    sqlx::query(
        r#"
        insert into distributions (id, owner, spec, status, caller_reference, next_check_at)
        select gen_random_uuid(), 'o', '{}',
               case when i % 100 < 95 then 'deleted' else 'disabling' end,
               'plan-' || i,
               case when i % 100 < 95 then null
                    when i % 100 = 99 then now() - interval '1 second'
                    else now() + make_interval(secs => i % 600) end
        from generate_series(1, 1000000) as i
        "#,
    )
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query("analyze distributions")
        .execute(&app.pool)
        .await
        .unwrap();

    // The claim statement of store::claims::claim, with its parameters bound.
    let plan: Vec<String> = sqlx::query_scalar(
        r#"
        explain
        with due as materialized (
            select id from distributions
            where next_check_at <= now()
            order by next_check_at
            limit 16
            for update skip locked
        )
        update distributions d
        set next_check_at = now() + make_interval(secs => 120.0),
            lease_token = d.lease_token + 1
        from due
        where d.id = due.id
        returning d.*, now() as "db_now?"
        "#,
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let plan = plan.join("\n");
    assert!(
        plan.contains("Index Scan using distributions_due"),
        "the claim does not walk the due index:\n{plan}"
    );
    assert!(
        !plan.contains("Seq Scan"),
        "the claim scans the table:\n{plan}"
    );
    assert!(!plan.contains("Sort"), "the claim sorts rows:\n{plan}");

    // The two due-time probes of store::claims::outlook.
    let probe: Vec<String> = sqlx::query_scalar(
        "explain select \
           (select min(next_check_at) from distributions \
            where next_check_at is not null and cloudfront_id is not null), \
           (select min(next_check_at) from distributions \
            where next_check_at is not null and cloudfront_id is null)",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let probe = probe.join("\n");
    assert!(
        probe.contains("distributions_due "),
        "the probe of rows with an id does not use the due index:\n{probe}"
    );
    assert!(
        probe.contains("distributions_due_uncreated"),
        "the probe of rows without an id does not use their due index:\n{probe}"
    );
    assert!(
        !probe.contains("Seq Scan"),
        "the probe scans the table:\n{probe}"
    );

    app.stop().await;
    drop_database(&database_url).await;
}
