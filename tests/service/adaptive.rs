//! The adaptive recheck schedule learning from finished waits in a running service.

use std::time::Duration;

use cloudfront_lifecycle::app::CloudFrontTarget;
use cloudfront_lifecycle::lifecycle::schedule::{Delays, RecheckSchedule};
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
    assert!(
        (0.15..0.6).contains(&low),
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
