//! Start-up: connect to Postgres and CloudFront, then run the API, the worker, or both,
//! until a shutdown signal.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::api::auth::{AuthSettings, AuthSetupError, Authenticator};
use crate::api::rate_limit::OwnerRateLimiter;
use crate::api::{self, AppState, HttpSettings};
use crate::cloudfront::{Backend, CallSettings, CloudFront};
use crate::simulator::{DeployTime, Simulator, SimulatorServer, SimulatorSettings};
use crate::store;
use crate::store::notify::WorkNotifier;
use crate::store::reads::ReadConnections;
use crate::worker::{Worker, WorkerSettings};

/// Where CloudFront calls go.
#[derive(Clone, Debug)]
pub enum CloudFrontTarget {
    /// Start the simulator in this process, with this deploy time.
    EmbeddedSimulator { deploy_time: Duration },
    /// aws-config's standard chain (honours AWS_ENDPOINT_URL).
    Aws,
    /// A CloudFront-compatible server at this URL (moto or a standalone simulator), with
    /// placeholder credentials.
    Endpoint(String),
}

/// Everything a service process needs, already parsed.
#[derive(Clone, Debug)]
pub struct ServiceSettings {
    pub database_url: String,
    pub database_max_connections: u32,
    pub migrate: bool,
    /// Token verification; required when the API runs.
    pub auth: Option<AuthSettings>,
    pub cloudfront: CloudFrontTarget,
    pub calls: CallSettings,
    pub http: HttpSettings,
    pub worker: WorkerSettings,
    pub run_api: bool,
    pub run_worker: bool,
    /// Lifecycle notifications, sent by the worker process when configured.
    pub webhooks: Option<crate::webhooks::WebhookSettings>,
}

/// A running service: the API and/or the worker, and the embedded simulator if any.
pub struct RunningService {
    /// The API's address, when the API runs.
    pub address: Option<SocketAddr>,
    pub pool: PgPool,
    pub backend: Backend,
    /// The embedded simulator, for inspection in tests.
    pub simulator: Option<Simulator>,
    /// The embedded simulator's URL.
    pub simulator_endpoint: Option<String>,
    pub shutdown: CancellationToken,
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
    _simulator_server: Option<SimulatorServer>,
}

impl RunningService {
    /// Waits until every part has stopped (after `shutdown` is cancelled).
    pub async fn wait(self) -> anyhow::Result<()> {
        for task in self.tasks {
            task.await.context("a service task panicked")??;
        }
        Ok(())
    }

    /// Asks every part to stop and waits for it.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.wait().await
    }
}

/// Connects, migrates if asked, and starts the parts named in `settings`. The API serves
/// on `listener` (tests pass one bound to port 0).
pub async fn start(
    settings: ServiceSettings,
    listener: Option<TcpListener>,
) -> anyhow::Result<RunningService> {
    // Checked first, so a missing or broken auth setting fails start-up before any other work.
    let authenticator = if settings.run_api {
        let auth = settings
            .auth
            .as_ref()
            .ok_or(AuthSetupError::NothingConfigured)?;
        Some(Arc::new(Authenticator::new(auth).await?))
    } else {
        None
    };

    let pool = store::connect_lazy(&settings.database_url, settings.database_max_connections)
        .context("DATABASE_URL is not a valid Postgres URL")?;
    if settings.migrate {
        store::MIGRATOR
            .run(&pool)
            .await
            .context("applying database migrations failed")?;
        info!("database migrations applied");
    }

    let (cloudfront, backend, simulator, simulator_server) = connect_cloudfront(&settings).await?;
    let metrics = crate::telemetry::metrics_handle();
    metrics::gauge!("cloudfront_lifecycle_backend_info", "backend" => backend.name(), "simulated" => backend.is_simulated().to_string())
        .set(1.0);

    let shutdown = CancellationToken::new();
    let mut tasks = Vec::new();
    let mut address = None;

    if settings.run_api {
        let listener = match listener {
            Some(listener) => listener,
            None => anyhow::bail!("the API needs a listener"),
        };
        address = Some(listener.local_addr()?);
        let reads = match settings.http.read_connections {
            0 => None,
            size => Some(
                ReadConnections::new(&settings.database_url, size)
                    .context("DATABASE_URL is not a valid Postgres URL")?,
            ),
        };
        let state = AppState {
            pool: pool.clone(),
            authenticator: authenticator.expect("built above when the API runs"),
            backend: backend.clone(),
            cloudfront: cloudfront.clone(),
            notifier: WorkNotifier::spawn(pool.clone()),
            metrics,
            limits: settings.http.limits.clone(),
            rate_limiter: OwnerRateLimiter::new(
                settings.http.rate_limit_per_second,
                settings.http.rate_limit_burst,
            )
            .map(Arc::new),
            events: crate::live::EventHub::spawn(pool.clone(), shutdown.clone()),
            reads,
        };
        let router = api::router(state, &settings.http);
        let stop = shutdown.clone();
        info!(address = %listener.local_addr()?, "API listening");
        tasks.push(tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
                .context("the HTTP server failed")
        }));
    }

    if settings.run_worker {
        let worker = Worker::new(pool.clone(), cloudfront, settings.worker.clone());
        let stop = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            worker.run(stop).await.context("the worker failed")
        }));
    }

    if settings.run_worker
        && let Some(webhooks) = settings.webhooks.clone()
    {
        let dispatcher = crate::webhooks::Dispatcher::new(pool.clone(), webhooks)
            .context("building the webhook client failed")?;
        let stop = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            dispatcher
                .run(stop)
                .await
                .context("webhook delivery failed")
        }));
    }

    Ok(RunningService {
        address,
        pool,
        backend,
        simulator_endpoint: simulator_server.as_ref().map(SimulatorServer::endpoint),
        simulator,
        shutdown,
        tasks,
        _simulator_server: simulator_server,
    })
}

async fn connect_cloudfront(
    settings: &ServiceSettings,
) -> anyhow::Result<(
    CloudFront,
    Backend,
    Option<Simulator>,
    Option<SimulatorServer>,
)> {
    match &settings.cloudfront {
        CloudFrontTarget::EmbeddedSimulator { deploy_time } => {
            let simulator = Simulator::new(SimulatorSettings {
                deploy_time: DeployTime::Fixed(*deploy_time),
                ..SimulatorSettings::default()
            });
            let listener = TcpListener::bind("127.0.0.1:0")
                .await
                .context("binding the embedded simulator to a loopback port failed")?;
            let server = simulator.spawn(listener).await?;
            warn!(
                endpoint = %server.endpoint(),
                deploy_seconds = deploy_time.as_secs_f64(),
                "CloudFront is SIMULATED: calls go to the embedded simulator and no real distribution is managed; set CLOUDFRONT_BACKEND=aws for AWS"
            );
            let cloudfront = CloudFront::for_endpoint(&server.endpoint(), &settings.calls);
            Ok((
                cloudfront,
                Backend::Simulator,
                Some(simulator),
                Some(server),
            ))
        }
        CloudFrontTarget::Aws => {
            let endpoint = std::env::var("AWS_ENDPOINT_URL_CLOUDFRONT")
                .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
                .ok();
            match &endpoint {
                Some(url) => {
                    warn!(endpoint = %url, "CloudFront calls go to an overridden endpoint, not AWS's")
                }
                None => info!("CloudFront calls go to AWS"),
            }
            let cloudfront = CloudFront::from_environment(&settings.calls).await;
            Ok((cloudfront, Backend::Aws { endpoint }, None, None))
        }
        CloudFrontTarget::Endpoint(url) => {
            warn!(endpoint = %url, "CloudFront calls go to an overridden endpoint, not AWS's");
            let cloudfront = CloudFront::for_endpoint(url, &settings.calls);
            Ok((
                cloudfront,
                Backend::Aws {
                    endpoint: Some(url.clone()),
                },
                None,
                None,
            ))
        }
    }
}

/// Cancels `token` on SIGINT or SIGTERM.
pub fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let interrupt = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(error) => {
                    warn!(%error, "cannot listen for SIGTERM");
                    std::future::pending::<()>().await;
                }
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();

        tokio::select! {
            _ = interrupt => info!("SIGINT received; shutting down"),
            _ = terminate => info!("SIGTERM received; shutting down"),
        }
        token.cancel();
    });
}
