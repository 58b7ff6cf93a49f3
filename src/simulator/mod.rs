//! A strict, in-memory CloudFront control-plane server speaking the REST-XML API
//! (version 2020-05-31), for testing code that drives CloudFront through any AWS client.
//!
//! Unlike moto 5.2.5, it changes the ETag on every change, keeps each change `InProgress`
//! for a deploy time, rejects deleting distributions that are enabled or still
//! deploying, and can inject the failures CloudFront shows in production. Faults and
//! inspection are available as methods on [`Simulator`] and over HTTP under
//! `/__simulator/` (documented in `admin.rs`).

mod admin;
mod calls;
mod deploy;
mod dispatch;
mod documents;
mod error;
mod external;
mod faults;
mod routes;
mod state;
mod tags;
mod xml;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use calls::CallRecord;
pub use deploy::DeployTime;
pub use error::ApiError;
pub use external::{ExternalChange, ExternalCreate};
pub use faults::{
    InjectedError, LostResponse, LostResponseMode, Operation, RateLimit, RateLimits, StaleReads,
};
pub use state::DistributionStatus;
pub use tags::Tag;

use calls::CallLog;
use deploy::DeploySampler;
use faults::Faults;
use state::Store;

/// Settings of a new simulator.
#[derive(Clone, Debug)]
pub struct SimulatorSettings {
    /// Deploy time of every change, until changed with [`Simulator::set_deploy_time`].
    pub deploy_time: DeployTime,
    /// Seed for distribution ids and ETags, so that runs can be repeated.
    pub seed: u64,
    /// Account quota; creates beyond it get 400 TooManyDistributions.
    pub max_distributions: usize,
    /// How many times faster than CloudFront's clock the simulator runs, for benchmarks:
    /// deploy times are divided by it and rate limits multiplied by it, while the call log
    /// keeps real times (so a lag in CloudFront time is the real lag times the scale).
    /// Values that are not a positive number count as 1.
    pub time_scale: f64,
}

impl SimulatorSettings {
    /// Returns the time scale, treating a value that is not a positive number as 1.
    pub fn scale(&self) -> f64 {
        if self.time_scale.is_finite() && self.time_scale > 0.0 {
            self.time_scale
        } else {
            1.0
        }
    }
}

impl Default for SimulatorSettings {
    fn default() -> Self {
        Self {
            deploy_time: DeployTime::Fixed(Duration::ZERO),
            seed: 0,
            // CloudFront's default quota of distributions per account; older accounts had 200.
            max_distributions: 500,
            time_scale: 1.0,
        }
    }
}

/// A distribution as the simulator stores it, for assertions in tests.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DistributionView {
    pub id: String,
    pub arn: String,
    pub domain_name: String,
    pub caller_reference: String,
    pub enabled: bool,
    pub status: DistributionStatus,
    pub etag: String,
    pub comment: String,
    pub aliases: Vec<String>,
    pub tags: Vec<Tag>,
    pub last_modified: DateTime<Utc>,
    pub deployed_at: DateTime<Utc>,
}

pub(crate) struct Inner {
    settings: SimulatorSettings,
    store: Store,
    faults: Faults,
    calls: CallLog,
}

impl Inner {
    fn new(settings: SimulatorSettings) -> Self {
        Self {
            store: Store::new(
                settings.deploy_time.clone(),
                settings.seed,
                settings.max_distributions,
                settings.scale(),
            ),
            faults: Faults::default(),
            calls: CallLog::default(),
            settings,
        }
    }

    fn view(&self, id: &str, now: DateTime<Utc>) -> Option<DistributionView> {
        let distribution = self.store.distributions.get(id)?;
        let current = &distribution.current;
        Some(DistributionView {
            id: distribution.id.clone(),
            arn: distribution.arn.clone(),
            domain_name: distribution.domain_name.clone(),
            caller_reference: distribution.caller_reference.clone(),
            enabled: current.enabled(),
            status: current.status(now),
            etag: current.etag.clone(),
            comment: current.config.comment(),
            aliases: current.config.aliases(),
            tags: distribution.tags.clone(),
            last_modified: current.last_modified,
            deployed_at: current.deployed_at,
        })
    }
}

/// A handle to one simulated CloudFront account; clones share the same state.
#[derive(Clone)]
pub struct Simulator {
    inner: Arc<Mutex<Inner>>,
}

impl Simulator {
    /// Creates a simulator with no distributions.
    ///
    /// # Panics
    /// Panics when `settings.deploy_time` is invalid (see [`DeployTime::validate`]).
    pub fn new(settings: SimulatorSettings) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner::new(settings))),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind, still usable by tests.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Returns the CloudFront routes under `/2020-05-31/` and the admin API under `/__simulator/`.
    pub fn router(&self) -> axum::Router {
        routes::router(self.clone()).merge(admin::router(self.clone()))
    }

    /// Serves [`Simulator::router`] on `listener` in a background task.
    pub async fn spawn(&self, listener: TcpListener) -> std::io::Result<SimulatorServer> {
        let address = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let router = self.router();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(error) = axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(%error, %address, "CloudFront simulator server failed");
            }
        });
        tracing::info!(%address, "CloudFront simulator listening");
        Ok(SimulatorServer {
            address,
            stop: Some(stop),
            task,
        })
    }

    /// Returns every distribution, ordered by id.
    pub fn distributions(&self) -> Vec<DistributionView> {
        let inner = self.lock();
        let now = Utc::now();
        let ids: Vec<String> = inner.store.distributions.keys().cloned().collect();
        ids.iter().filter_map(|id| inner.view(id, now)).collect()
    }

    pub fn distribution(&self, id: &str) -> Option<DistributionView> {
        self.lock().view(id, Utc::now())
    }

    /// Returns every CloudFront call served so far, oldest first.
    pub fn calls(&self) -> Vec<CallRecord> {
        self.lock().calls.records()
    }

    /// Returns the number of calls served per operation, failed ones included.
    pub fn call_counts(&self) -> BTreeMap<Operation, u64> {
        self.lock().calls.counts()
    }

    /// Deletes every distribution, disarms every fault, clears the call log and
    /// restores the deploy time of the settings.
    pub fn reset(&self) {
        let mut inner = self.lock();
        let settings = inner.settings.clone();
        *inner = Inner::new(settings);
    }

    pub fn inject_error(&self, error: InjectedError) {
        self.lock().faults.inject_error(error);
    }

    pub fn lose_responses(&self, lost: LostResponse) {
        self.lock().faults.lose_responses(lost);
    }

    /// Delays every CloudFront call by `latency` before it is handled.
    pub fn set_latency(&self, latency: Duration) {
        self.lock().faults.latency = latency;
    }

    pub fn serve_stale_reads(&self, stale: StaleReads) {
        self.lock().faults.serve_stale_reads(stale);
    }

    /// Replaces both rate limits, given in CloudFront time; buckets start full.
    pub fn set_rate_limits(&self, limits: RateLimits) {
        let mut inner = self.lock();
        let scale = inner.settings.scale();
        let scaled = |limit: Option<RateLimit>| {
            limit.map(|limit| RateLimit {
                rate_per_second: limit.rate_per_second * scale,
                ..limit
            })
        };
        inner.faults.set_rate_limits(RateLimits {
            mutating: scaled(limits.mutating),
            read: scaled(limits.read),
        });
    }

    /// Disarms every fault: errors, lost responses, latency, stale reads, rate limits.
    pub fn clear_faults(&self) {
        self.lock().faults = Faults::default();
    }

    /// Sets the deploy time of future changes to distributions without their own.
    ///
    /// # Panics
    /// Panics when `deploy_time` is invalid (see [`DeployTime::validate`]).
    pub fn set_deploy_time(&self, deploy_time: DeployTime) {
        self.lock().store.deploy = DeploySampler::new(deploy_time);
    }

    /// Sets the deploy time of future changes to one distribution.
    ///
    /// # Panics
    /// Panics when `deploy_time` is invalid (see [`DeployTime::validate`]).
    pub fn set_distribution_deploy_time(
        &self,
        id: &str,
        deploy_time: DeployTime,
    ) -> Result<(), ApiError> {
        let mut inner = self.lock();
        let distribution = inner
            .store
            .distributions
            .get_mut(id)
            .ok_or_else(|| ApiError::no_such_distribution(id))?;
        distribution.deploy = Some(DeploySampler::new(deploy_time));
        Ok(())
    }
}

/// A running simulator server; dropping it stops the server too.
pub struct SimulatorServer {
    address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl SimulatorServer {
    /// Returns the base URL to configure as the client's endpoint, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stops accepting connections and waits up to five seconds for open requests to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = &mut self.task;
        if tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .is_err()
        {
            self.task.abort();
        }
        tracing::info!(address = %self.address, "CloudFront simulator stopped");
    }
}

impl Drop for SimulatorServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
