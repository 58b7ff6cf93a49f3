//! The adaptive recheck schedule learning from finished waits in a running service.

use std::time::Duration;

use cloudfront_lifecycle::app::CloudFrontTarget;
use cloudfront_lifecycle::lifecycle::schedule::{
    Delays, LearnedWindow, RecheckSchedule, WaitSample,
};
use cloudfront_lifecycle::store::waits;
use cloudfront_lifecycle::worker::WorkerSettings;
use reqwest::StatusCode;

use crate::harness::{TestOptions, fast_worker, spawn_app_with};

/// Every change in the embedded simulator takes this long to deploy.
const DEPLOY: Duration = Duration::from_millis(300);

/// Distributions created and deleted to teach the schedule; more than the 20 observations
/// of each kind it needs before it trusts them.
const TEACHING_ROUNDS: usize = 24;

/// The schedule runs 100 times faster than its settings, so its 30 s cache of learned
/// windows lasts 0.3 s and its 13 s dense interval is 0.13 s.
const TIME_SCALE: f64 = 100.0;

fn adaptive_options() -> TestOptions {
    TestOptions {
        cloudfront: CloudFrontTarget::EmbeddedSimulator {
            deploy_time: DEPLOY,
        },
        worker: Some(WorkerSettings {
            schedule: RecheckSchedule::default(),
            delays: Delays::default(),
            time_scale: TIME_SCALE,
            ..fast_worker()
        }),
        ..TestOptions::default()
    }
}

#[tokio::test]
async fn adaptive_learns_from_finished_waits() {
    let app = spawn_app_with(adaptive_options()).await;
    let mut ids = Vec::new();
    for _ in 0..TEACHING_ROUNDS {
        ids.push(app.create("alice").await["id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        app.wait_for_status(id, "alice", "deployed", Duration::from_secs(30))
            .await;
    }
    for id in &ids {
        assert_eq!(app.delete(id, "alice").await.status(), StatusCode::ACCEPTED);
    }
    for id in &ids {
        app.wait_for_status(id, "alice", "deleted", Duration::from_secs(30))
            .await;
    }

    let deploys = app
        .count("select count(*) from wait_observations where kind = 'deploy'")
        .await;
    let disables = app
        .count("select count(*) from wait_observations where kind = 'disable'")
        .await;
    assert!(
        deploys >= TEACHING_ROUNDS as i64,
        "{deploys} deploy observations"
    );
    assert!(
        disables >= TEACHING_ROUNDS as i64,
        "{disables} disable observations"
    );
    let low: f64 = sqlx::query_scalar(
        "select percentile_cont(0.03) within group (order by seconds) from wait_observations where kind = 'deploy'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    // A wait seen over is dated up to one dense interval (0.13 s here) before the check
    // that saw it, and a loaded machine delays the write-back that starts each wait, so
    // the low end allows for both.
    assert!(
        (0.1..0.6).contains(&low),
        "learned low quantile {low} s is far from the 0.3 s deploy time"
    );

    // Let the worker's cache of learned windows expire (0.3 s at this scale), so the next
    // wait is scheduled from everything recorded above.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let id = app.create("alice").await["id"].as_str().unwrap().to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let first_gap = loop {
        let gap: Option<f64> = sqlx::query_scalar(
            "select extract(epoch from next_check_at - waiting_since)::float8 from distributions \
             where id = $1::uuid and status = 'deploying' and checks = 0 and waiting_since is not null",
        )
        .bind(&id)
        .fetch_optional(&app.pool)
        .await
        .unwrap()
        .flatten();
        if let Some(gap) = gap {
            break gap;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new distribution never started waiting for Deployed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert!(
        first_gap >= low * 0.94 && first_gap <= low * 1.06,
        "first recheck {first_gap} s after the change, expected near the learned low quantile {low} s"
    );
    app.stop().await;
}

/// Inserts `count` rows in `status`, the one numbered `index` waiting since
/// `age_seconds(index)` seconds ago.
async fn insert_waiting(
    pool: &sqlx::PgPool,
    status: &str,
    count: i64,
    age_seconds: impl Fn(i64) -> f64,
) {
    let ids: Vec<uuid::Uuid> = (0..count).map(|_| uuid::Uuid::new_v4()).collect();
    let ages: Vec<f64> = (0..count).map(age_seconds).collect();
    sqlx::query(
        "insert into distributions (id, owner, spec, status, caller_reference, waiting_since)
         select id, 'alice', '{}', $3, 'waiting-' || id, now() - make_interval(secs => age)
         from unnest($1::uuid[], $2::float8[]) as waiting (id, age)",
    )
    .bind(&ids)
    .bind(&ages)
    .bind(status)
    .execute(pool)
    .await
    .unwrap();
}

async fn insert_finished(pool: &sqlx::PgPool, kind: &str, seconds: &[f64]) {
    sqlx::query("insert into wait_observations (kind, seconds) select $1, unnest($2::float8[])")
        .bind(kind)
        .bind(seconds)
        .execute(pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn learned_windows_count_open_waits() {
    let app = spawn_app_with(TestOptions {
        worker: None,
        ..TestOptions::default()
    })
    .await;

    // Deploys: 100 finished in 2..=200 s, and one deploying and one updating row open far
    // past them. Rows in other statuses are no waits, whatever their waiting_since is.
    let deploys: Vec<f64> = (1..=100).map(|index| f64::from(index) * 2.0).collect();
    insert_finished(&app.pool, "deploy", &deploys).await;
    insert_waiting(&app.pool, "deploying", 1, |_| 500.0).await;
    insert_waiting(&app.pool, "updating", 1, |_| 600.0).await;
    insert_waiting(&app.pool, "deployed", 5, |_| 700.0).await;
    insert_waiting(&app.pool, "deleted", 5, |_| 700.0).await;

    // Disables: a burst of 10,200 in which 200 finished within 150..250 s and 10,000 are
    // open at 300 to 399 s.
    let disables: Vec<f64> = (0..200)
        .map(|index| 150.0 + f64::from(index) * 0.5)
        .collect();
    insert_finished(&app.pool, "disable", &disables).await;
    insert_waiting(&app.pool, "disabling", 10_000, |index| {
        300.0 + (index % 100) as f64
    })
    .await;

    let started = std::time::Instant::now();
    let windows = waits::learned_windows(&app.pool).await.unwrap();
    let took = started.elapsed();

    let open_deploys = [500.0, 600.0];
    let expected_deploy =
        LearnedWindow::estimate(&WaitSample::from_durations(&deploys, &open_deploys));
    assert_eq!(windows.deploy, expected_deploy);
    assert_eq!(
        windows.deploy.map(|window| window.high),
        Some(Duration::from_secs(198)),
        "the 99th of 102 deploys, with the deployed and deleted rows left out"
    );

    let disable = windows.disable.expect("a disable window");
    assert_eq!(
        disable.low,
        Duration::from_secs_f64(249.5),
        "fewer than 3% of the burst finished, so the first check is at the longest finished"
    );
    assert!(
        disable.high >= Duration::from_secs(399) && disable.high < Duration::from_secs(420),
        "high {:?}, expected the oldest open wait, about 399 s",
        disable.high
    );
    // A generous bound, so a loaded machine does not fail the test: the point is that ten
    // thousand open waits are counted in Postgres rather than sent to the worker.
    assert!(
        took < Duration::from_secs(5),
        "reading the windows took {took:?}"
    );
    app.stop().await;
}
