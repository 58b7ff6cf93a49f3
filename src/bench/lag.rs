//! Detection lag versus reads: deletions of deployed distributions under each recheck
//! schedule, with the simulator's clock sped up.
//!
//! Lag is measured from the moment the simulator turned a disabled distribution Deployed
//! (the `deployed_at` of the disable in its call log) to the service's DeleteDistribution
//! call, and reported in CloudFront time (real lag times the time scale).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::net::TcpListener;
use uuid::Uuid;

use super::quantile;
use crate::app::{self, CloudFrontTarget, ServiceSettings};
use crate::cloudfront::CallSettings;
use crate::lifecycle::schedule::{Delays, RecheckSchedule};
use crate::simulator::{
    DeployTime, ExternalCreate, Operation, RateLimit, RateLimits, Simulator, SimulatorSettings,
};
use crate::store::rate_limit::{BucketLimit, RateLimitSettings};
use crate::worker::WorkerSettings;

#[derive(Args, Debug)]
pub struct LagArgs {
    /// Postgres URL of a server where the benchmark may create and drop databases.
    #[arg(long, env = "BENCH_ADMIN_DATABASE_URL", hide_env_values = true)]
    pub admin_database_url: String,
    /// Recheck schedules to compare, in the RECHECK_SCHEDULE syntax.
    #[arg(
        long = "schedule",
        default_values = ["fixed:900", "fixed:60", "fixed:15", "adaptive"]
    )]
    pub schedules: Vec<RecheckSchedule>,
    /// Deletions measured per schedule.
    #[arg(long, default_value_t = 500)]
    pub deletions: usize,
    /// Deletions run first and not measured, so the adaptive schedule can learn (it needs
    /// 20 finished waits).
    #[arg(long, default_value_t = 40)]
    pub warmup: usize,
    /// How many times faster than CloudFront the simulator's clock runs.
    #[arg(long, default_value_t = 20.0, value_parser = crate::config::positive_number)]
    pub time_scale: f64,
    /// The account's read budget in calls per second of CloudFront time, shared by the
    /// service's read bucket and the simulator's; unset leaves reads unlimited.
    #[arg(long)]
    pub read_rate: Option<f64>,
    /// Rows one worker checks at the same time.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Seed of the simulator's deploy times.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Maximum real time, in seconds, of one schedule's run; rows left then are reported as
    /// unfinished.
    #[arg(long, default_value_t = 900.0)]
    pub timeout_seconds: f64,
}

/// The measurements of one schedule's run.
struct RunResult {
    schedule: String,
    finished: usize,
    lag: Vec<f64>,
    reads: Vec<f64>,
    wall: Duration,
}

/// Runs every schedule in turn, each on a fresh database and simulator, and prints a table.
pub async fn run(args: LagArgs) -> anyhow::Result<()> {
    let mut results = Vec::new();
    for schedule in &args.schedules {
        tracing::info!(%schedule, deletions = args.deletions, "lag benchmark run starting");
        results.push(run_one(&args, schedule).await?);
    }

    println!(
        "deletions={} warmup={} time_scale={} read_rate={} (CloudFront time)",
        args.deletions,
        args.warmup,
        args.time_scale,
        args.read_rate
            .map_or("unlimited".to_owned(), |rate| format!("{rate}/s"))
    );
    println!(
        "| schedule | finished | lag p50 (s) | lag p95 (s) | lag p99 (s) | reads/deletion median | reads/deletion p95 | reads/deletion mean | wall (s) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for result in &results {
        let mut lag = result.lag.clone();
        lag.sort_by(f64::total_cmp);
        let mut reads = result.reads.clone();
        reads.sort_by(f64::total_cmp);
        let mean = reads.iter().sum::<f64>() / reads.len().max(1) as f64;
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.0} | {:.0} | {:.1} | {:.0} |",
            result.schedule,
            result.finished,
            quantile(&lag, 0.50),
            quantile(&lag, 0.95),
            quantile(&lag, 0.99),
            quantile(&reads, 0.50),
            quantile(&reads, 0.95),
            mean,
            result.wall.as_secs_f64(),
        );
    }
    Ok(())
}

async fn run_one(args: &LagArgs, schedule: &RecheckSchedule) -> anyhow::Result<RunResult> {
    let scale = args.time_scale;
    let (database_url, database_name) = create_database(&args.admin_database_url).await?;

    let simulator = Simulator::new(SimulatorSettings {
        deploy_time: DeployTime::Field { seed: args.seed },
        seed: args.seed,
        max_distributions: args.deletions + args.warmup + 10,
        time_scale: scale,
    });
    // The simulator throttles like CloudFront would, and the service's own read bucket gets
    // the same budget. Mutating calls are left ample, so reads are what is measured.
    if let Some(rate) = args.read_rate {
        simulator.set_rate_limits(RateLimits {
            mutating: None,
            read: Some(RateLimit {
                rate_per_second: rate,
                burst: rate.max(1.0).ceil() as u32,
            }),
        });
    }
    let server = simulator
        .spawn(TcpListener::bind("127.0.0.1:0").await?)
        .await?;

    let read_rate = args.read_rate.unwrap_or(100_000.0);
    let worker = WorkerSettings {
        concurrency: args.concurrency,
        safety_interval: Duration::from_secs(1),
        schedule: schedule.clone(),
        delays: Delays::default(),
        rate_limits: RateLimitSettings {
            mutating: BucketLimit {
                rate_per_second: 100_000.0,
                burst: 100_000.0,
            },
            read: BucketLimit {
                rate_per_second: read_rate * scale,
                burst: read_rate.max(1.0),
            },
            recovery: Duration::from_secs(60).div_f64(scale),
            max_wait: Duration::from_secs(10).div_f64(scale),
        },
        time_scale: scale,
        ..WorkerSettings::default()
    };
    let service = app::start(
        ServiceSettings {
            database_url: database_url.clone(),
            database_max_connections: 20,
            migrate: true,
            auth: None,
            cloudfront: CloudFrontTarget::Endpoint(server.endpoint()),
            calls: CallSettings {
                max_attempts: 1,
                attempt_timeout: Duration::from_secs(10),
                call_timeout: Duration::from_secs(20),
            },
            http: Default::default(),
            worker,
            run_api: false,
            run_worker: true,
            webhooks: None,
        },
        None,
    )
    .await?;
    let pool = service.pool.clone();
    let deadline = Instant::now() + Duration::from_secs_f64(args.timeout_seconds);

    if args.warmup > 0 {
        insert_deletions(&pool, &simulator, args.warmup).await?;
        wait_until_deleted(&pool, deadline).await?;
    }
    let calls_before = simulator.calls().len();
    let started = Instant::now();
    let measured = insert_deletions(&pool, &simulator, args.deletions).await?;
    let finished = wait_until_deleted(&pool, deadline).await?;
    let wall = started.elapsed();

    let (lag, reads) = measure(&simulator, calls_before, &measured, scale);
    service.stop().await?;
    server.shutdown().await;
    pool.close().await;
    drop_database(&args.admin_database_url, &database_name).await?;

    Ok(RunResult {
        schedule: schedule.to_string(),
        finished: finished.min(measured.len()),
        lag,
        reads,
        wall,
    })
}

/// Creates `count` enabled, deployed distributions in the simulator and, for each, a managed
/// row with a pending deletion, due now. Returns their CloudFront ids.
async fn insert_deletions(
    pool: &PgPool,
    simulator: &Simulator,
    count: usize,
) -> anyhow::Result<Vec<String>> {
    let spec: crate::spec::DistributionSpec = serde_json::from_value(serde_json::json!({
        "origin": {"domain_name": "origin.example.com"},
        "comment": "benchmark"
    }))?;
    let spec = serde_json::to_value(spec)?;
    let mut ids = Vec::with_capacity(count);
    let mut cloudfront_ids = Vec::with_capacity(count);
    let mut references = Vec::with_capacity(count);
    for _ in 0..count {
        let reference = Uuid::new_v4().to_string();
        let created = simulator
            .external_create(ExternalCreate {
                caller_reference: Some(reference.clone()),
                enabled: true,
                comment: "benchmark".into(),
                // Old enough to be Deployed whatever its drawn deploy time.
                age: Duration::from_secs(30 * 24 * 3600),
                ..ExternalCreate::default()
            })
            .map_err(|error| anyhow::anyhow!("creating in the simulator failed: {error:?}"))?;
        ids.push(Uuid::new_v4());
        cloudfront_ids.push(created.id);
        references.push(reference);
    }

    sqlx::query!(
        r#"
        insert into distributions (id, owner, spec, status, intent, caller_reference,
                                   create_attempted, cloudfront_id, next_check_at,
                                   delete_requested_at)
        select id, 'benchmark', $4, 'deployed', 'delete', reference, true, cloudfront_id,
               now(), now()
        from unnest($1::uuid[], $2::text[], $3::text[]) as new(id, cloudfront_id, reference)
        "#,
        &ids,
        &cloudfront_ids,
        &references,
        spec,
    )
    .execute(pool)
    .await
    .context("inserting the benchmark rows failed")?;
    sqlx::query!("select pg_notify('cloudfront_lifecycle_work', '')")
        .execute(pool)
        .await?;
    Ok(cloudfront_ids)
}

/// Waits until no row is left undeleted or the deadline passes; returns how many rows were
/// deleted.
async fn wait_until_deleted(pool: &PgPool, deadline: Instant) -> anyhow::Result<usize> {
    loop {
        let row = sqlx::query!(
            r#"
            select count(*) filter (where status <> 'deleted') as "left!",
                   count(*) filter (where status = 'deleted') as "deleted!"
            from distributions
            "#
        )
        .fetch_one(pool)
        .await?;
        if row.left == 0 || Instant::now() >= deadline {
            if row.left > 0 {
                tracing::warn!(
                    left = row.left,
                    "deadline passed before every row was deleted"
                );
            }
            return Ok(row.deleted as usize);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Returns the detection lag of each measured deletion and the reads each one took, both
/// from the simulator's call log and in CloudFront time.
fn measure(
    simulator: &Simulator,
    calls_before: usize,
    measured: &[String],
    scale: f64,
) -> (Vec<f64>, Vec<f64>) {
    let calls = simulator.calls();
    let mut reads: HashMap<&str, f64> = measured.iter().map(|id| (id.as_str(), 0.0)).collect();
    let mut deployed_at = HashMap::new();
    let mut deleted_at = HashMap::new();
    for call in &calls[calls_before.min(calls.len())..] {
        let Some(id) = call.distribution_id.as_deref() else {
            continue;
        };
        let Some(count) = reads.get_mut(id) else {
            continue;
        };
        match call.operation {
            Operation::GetDistribution => *count += 1.0,
            Operation::UpdateDistribution if call.http_status == 200 => {
                if let Some(at) = call.deployed_at {
                    deployed_at.insert(id, at);
                }
            }
            Operation::DeleteDistribution if call.http_status == 204 => {
                deleted_at.insert(id, call.time);
            }
            _ => {}
        }
    }
    let lag = deleted_at
        .iter()
        .filter_map(|(id, deleted)| {
            let deployed = deployed_at.get(id)?;
            let real = (*deleted - *deployed).as_seconds_f64();
            Some(real.max(0.0) * scale)
        })
        .collect();
    let reads = reads
        .iter()
        .filter(|(id, _)| deleted_at.contains_key(*id))
        .map(|(_, count)| *count)
        .collect();
    (lag, reads)
}

async fn create_database(admin_url: &str) -> anyhow::Result<(String, String)> {
    let name = format!("bench_{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(admin_url)
        .await
        .context("connecting to the admin database URL failed")?;
    sqlx::query(&format!("create database {name}"))
        .execute(&mut admin)
        .await?;
    let (base, _) = admin_url
        .rsplit_once('/')
        .context("the admin database URL has no database name")?;
    Ok((format!("{base}/{name}"), name))
}

async fn drop_database(admin_url: &str, name: &str) -> anyhow::Result<()> {
    let mut admin = PgConnection::connect(admin_url).await?;
    sqlx::query(&format!("drop database if exists {name} with (force)"))
        .execute(&mut admin)
        .await?;
    Ok(())
}
