//! The command line: one binary with a subcommand per role.

use std::net::SocketAddr;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tokio::net::TcpListener;

use crate::app::{self, CloudFrontTarget, ServiceSettings};
use crate::config::{
    AuthArgs, BackendKind, CloudFrontArgs, DatabaseArgs, HttpArgs, LogArgs, Secret, WebhookArgs,
    WorkerArgs, seconds,
};
use crate::simulator::{DeployTime, Simulator, SimulatorSettings};

#[derive(Parser, Debug)]
#[command(
    name = "cloudfront-lifecycle",
    version,
    about = "Creates CloudFront distributions and finishes their deletion in the background."
)]
pub struct Cli {
    #[command(flatten)]
    pub log: LogArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the API and the worker in one process (the default deployment).
    Serve(Box<ServeArgs>),
    /// Run only the HTTP API.
    Api(Box<ApiArgs>),
    /// Run only the background worker.
    Worker(Box<WorkerCommandArgs>),
    /// Apply the database migrations and exit.
    Migrate(MigrateArgs),
    /// Run the CloudFront simulator as a standalone server for any AWS client.
    Simulator(SimulatorArgs),
    /// Print a bearer token for local use, signed with AUTH_JWT_SECRET.
    Token(TokenArgs),
    /// Print the OpenAPI document.
    Openapi,
    /// Inspect and nudge distributions directly in the database, for operators.
    Admin(crate::admin::AdminArgs),
    /// Run a benchmark against a local simulator and Postgres and print its table.
    #[command(hide = true)]
    Bench(crate::bench::BenchArgs),
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub auth: AuthArgs,
    #[command(flatten)]
    pub cloudfront: CloudFrontArgs,
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub worker: WorkerArgs,
    #[command(flatten)]
    pub webhooks: WebhookArgs,
    /// Do not apply migrations at start-up.
    #[arg(long, env = "SKIP_MIGRATIONS")]
    pub skip_migrations: bool,
}

#[derive(Args, Debug)]
pub struct ApiArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub auth: AuthArgs,
    #[command(flatten)]
    pub cloudfront: CloudFrontArgs,
    #[command(flatten)]
    pub http: HttpArgs,
}

#[derive(Args, Debug)]
pub struct WorkerCommandArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub cloudfront: CloudFrontArgs,
    #[command(flatten)]
    pub worker: WorkerArgs,
    #[command(flatten)]
    pub webhooks: WebhookArgs,
}

#[derive(Args, Debug)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
}

#[derive(Args, Debug)]
pub struct SimulatorArgs {
    /// Address to listen on.
    #[arg(long, env = "SIMULATOR_BIND_ADDR", default_value = "127.0.0.1:4566")]
    pub bind: SocketAddr,
    /// Seconds each change stays InProgress before Deployed.
    #[arg(long, env = "SIMULATOR_DEPLOY_SECONDS", default_value_t = 5.0)]
    pub deploy_seconds: f64,
    /// Draw deploy times from a field-like mix (mostly 2 to 6 minutes, a tail past 40)
    /// seeded with this number, instead of --deploy-seconds.
    #[arg(long, env = "SIMULATOR_FIELD_DEPLOY_SEED")]
    pub field_deploy_seed: Option<u64>,
    /// For benchmarks: how many times faster than CloudFront the simulator's clock runs.
    /// Deploy times are divided by it and rate limits multiplied by it.
    #[arg(long, env = "SIMULATOR_TIME_SCALE", default_value_t = 1.0, value_parser = crate::config::positive_number)]
    pub time_scale: f64,
}

#[derive(Args, Debug)]
pub struct TokenArgs {
    /// The owner the token names (its `sub` claim).
    #[arg(long)]
    pub sub: String,
    /// Seconds until the token expires.
    #[arg(long, default_value_t = 3600)]
    pub ttl: u64,
    /// HS256 secret that signs the token (at least 32 characters).
    #[arg(long, env = "AUTH_JWT_SECRET", hide_env_values = true)]
    pub auth_jwt_secret: Secret,
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            args.worker.validate()?;
            let mut settings = service_settings(
                &args.database,
                Some(&args.auth),
                &args.cloudfront,
                Some(&args.http),
                Some(&args.worker),
                !args.skip_migrations,
            );
            settings.webhooks = args.webhooks.settings()?;
            run_service(settings, Some(args.http.bind_addr)).await
        }
        Command::Api(args) => {
            let settings = service_settings(
                &args.database,
                Some(&args.auth),
                &args.cloudfront,
                Some(&args.http),
                None,
                false,
            );
            run_service(settings, Some(args.http.bind_addr)).await
        }
        Command::Worker(args) => {
            args.worker.validate()?;
            let mut settings = service_settings(
                &args.database,
                None,
                &args.cloudfront,
                None,
                Some(&args.worker),
                false,
            );
            settings.webhooks = args.webhooks.settings()?;
            run_service(settings, None).await
        }
        Command::Migrate(args) => {
            let pool = crate::store::connect_lazy(&args.database.database_url, 2)
                .context("DATABASE_URL is not a valid Postgres URL")?;
            crate::store::MIGRATOR
                .run(&pool)
                .await
                .context("applying database migrations failed")?;
            tracing::info!("database migrations applied");
            Ok(())
        }
        Command::Simulator(args) => run_simulator(args).await,
        Command::Bench(args) => crate::bench::run(args).await,
        Command::Token(args) => {
            let token = crate::api::auth::issue_token(
                args.auth_jwt_secret.expose().as_bytes(),
                &args.sub,
                args.ttl,
            )
            .context("signing the token failed")?;
            println!("{token}");
            Ok(())
        }
        Command::Openapi => {
            print!("{}", crate::api::openapi_json());
            Ok(())
        }
        Command::Admin(args) => crate::admin::run(args).await,
    }
}

fn service_settings(
    database: &DatabaseArgs,
    auth: Option<&AuthArgs>,
    cloudfront: &CloudFrontArgs,
    http: Option<&HttpArgs>,
    worker: Option<&WorkerArgs>,
    migrate: bool,
) -> ServiceSettings {
    let target = match cloudfront.cloudfront_backend {
        BackendKind::Simulator => CloudFrontTarget::EmbeddedSimulator {
            deploy_time: seconds(cloudfront.simulator_deploy_seconds),
        },
        BackendKind::Aws => CloudFrontTarget::Aws,
    };
    ServiceSettings {
        database_url: database.database_url.clone(),
        database_max_connections: database.database_max_connections,
        migrate,
        auth: auth.map(AuthArgs::settings),
        cloudfront: target,
        calls: cloudfront.call_settings(),
        http: http.map(HttpArgs::settings).unwrap_or_default(),
        worker: worker.map(WorkerArgs::settings).unwrap_or_default(),
        run_api: http.is_some(),
        run_worker: worker.is_some(),
        webhooks: None,
    }
}

async fn run_service(settings: ServiceSettings, bind: Option<SocketAddr>) -> anyhow::Result<()> {
    let listener = match bind {
        Some(address) => Some(
            TcpListener::bind(address)
                .await
                .with_context(|| format!("cannot listen on {address} (BIND_ADDR)"))?,
        ),
        None => None,
    };
    let service = app::start(settings, listener).await?;
    app::cancel_on_signal(service.shutdown.clone());
    service.wait().await?;
    tracing::info!("stopped");
    Ok(())
}

async fn run_simulator(args: SimulatorArgs) -> anyhow::Result<()> {
    let deploy_time = match args.field_deploy_seed {
        Some(seed) => DeployTime::Field { seed },
        None => DeployTime::Fixed(seconds(args.deploy_seconds)),
    };
    let simulator = Simulator::new(SimulatorSettings {
        deploy_time,
        time_scale: args.time_scale,
        ..SimulatorSettings::default()
    });
    let listener = TcpListener::bind(args.bind)
        .await
        .with_context(|| format!("cannot listen on {} (--bind)", args.bind))?;
    let server = simulator.spawn(listener).await?;
    tracing::warn!(endpoint = %server.endpoint(), deploy_seconds = args.deploy_seconds, time_scale = args.time_scale, "CloudFront simulator listening; it keeps state in memory and is not AWS");
    let stop = tokio_util::sync::CancellationToken::new();
    app::cancel_on_signal(stop.clone());
    stop.cancelled().await;
    Ok(())
}
