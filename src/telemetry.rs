//! Logging and metrics set-up.

use std::sync::OnceLock;

use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sqlx::PgPool;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

/// Installs the global tracing subscriber; the level comes from RUST_LOG (default info).
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(otel::layer());
    let result = match format {
        LogFormat::Text => registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    // Every enclosing span, so a line logged in a nested span still carries
                    // the request's request_id and owner.
                    .with_span_list(true)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    // A second call (tests start several services in one process) keeps the first.
    let _ = result;
}

/// The process's Prometheus recorder, installed on first use.
pub fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| match histogram_buckets().install_recorder() {
            Ok(handle) => Some(handle),
            Err(error) => {
                tracing::warn!(%error, "metrics recorder not installed; /metrics is disabled");
                None
            }
        })
        .clone()
}

/// Bucket bounds for each histogram, in seconds. Without them the exporter renders summaries,
/// which cannot be aggregated across replicas.
fn histogram_buckets() -> PrometheusBuilder {
    let buckets: [(&str, &[f64]); 3] = [
        (
            "cloudfront_lifecycle_http_request_duration_seconds",
            &[
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ],
        ),
        // CloudFront takes minutes to disable a distribution, sometimes more than 40.
        (
            "cloudfront_lifecycle_deletion_duration_seconds",
            &[
                1.0, 10.0, 60.0, 180.0, 300.0, 600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0, 7200.0,
            ],
        ),
        (
            "cloudfront_lifecycle_detection_lag_seconds",
            &[0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0],
        ),
    ];
    let mut builder = PrometheusBuilder::new();
    for (name, bounds) in buckets {
        builder = builder
            .set_buckets_for_metric(Matcher::Full(name.to_owned()), bounds)
            .expect("bucket lists are not empty");
    }
    builder
}

/// Refreshes the gauges that describe the table (rows by status, due backlog, webhook
/// backlog). `/metrics` calls it on each scrape, at most once per `MIN_GAUGE_AGE`, so an
/// idle service that nobody scrapes runs no statement for them. Every replica reports the
/// same values, so dashboards take `max` over instances.
pub async fn refresh_table_gauges(pool: &PgPool) {
    static LAST_REFRESH: std::sync::Mutex<Option<std::time::Instant>> = std::sync::Mutex::new(None);
    {
        let mut last = LAST_REFRESH.lock().expect("gauge refresh time");
        if last.is_some_and(|at| at.elapsed() < MIN_GAUGE_AGE) {
            return;
        }
        *last = Some(std::time::Instant::now());
    }
    if let Err(error) = refresh_gauges(pool).await {
        tracing::warn!(%error, "refreshing the table gauges failed; /metrics shows the previous values");
    }
}

/// Scrapes closer together than this reuse the table gauges of the previous one.
const MIN_GAUGE_AGE: Duration = Duration::from_secs(5);

async fn refresh_gauges(pool: &PgPool) -> Result<(), crate::store::StoreError> {
    let counts = crate::store::stats::rows_by_status(pool).await?;
    // Statuses with no rows are reported as 0 rather than dropped, so alerts see them.
    for status in crate::lifecycle::Status::ALL {
        let count = counts
            .iter()
            .find(|(name, _)| name == status.as_str())
            .map_or(0, |(_, count)| *count);
        metrics::gauge!("cloudfront_lifecycle_distributions", "status" => status.as_str())
            .set(count as f64);
    }

    let backlog = crate::store::stats::backlog(pool).await?;
    metrics::gauge!("cloudfront_lifecycle_due_rows").set(backlog.due_rows as f64);
    metrics::gauge!("cloudfront_lifecycle_oldest_due_seconds").set(backlog.oldest_due_seconds);
    metrics::gauge!("cloudfront_lifecycle_overdue_deletions").set(backlog.overdue_rows as f64);
    metrics::gauge!("cloudfront_lifecycle_webhook_pending").set(backlog.pending_webhooks as f64);
    metrics::gauge!("cloudfront_lifecycle_webhook_oldest_pending_seconds")
        .set(backlog.oldest_webhook_seconds);
    Ok(())
}

/// Sends buffered spans to the OpenTelemetry collector; call before the process exits.
pub fn shutdown_tracing() {
    otel::shutdown();
}

/// OpenTelemetry export, built with `--features otel` and active when
/// OTEL_EXPORTER_OTLP_ENDPOINT is set. The exporter reads the standard OTEL_* variables.
#[cfg(feature = "otel")]
mod otel {
    use std::sync::OnceLock;

    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
    use tracing::Subscriber;
    use tracing_opentelemetry::OpenTelemetryLayer;
    use tracing_subscriber::registry::LookupSpan;

    static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

    pub fn layer<S>() -> Option<OpenTelemetryLayer<S, SdkTracer>>
    where
        S: Subscriber + for<'span> LookupSpan<'span>,
    {
        std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT")?;
        let exporter = match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
        {
            Ok(exporter) => exporter,
            Err(error) => {
                // The subscriber is not installed yet, so this goes to stderr directly.
                eprintln!(
                    "OpenTelemetry export disabled: building the OTLP exporter failed: {error}"
                );
                return None;
            }
        };
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                Resource::builder()
                    .with_service_name("cloudfront-lifecycle")
                    .build(),
            )
            .build();
        let tracer = provider.tracer("cloudfront-lifecycle");
        let _ = PROVIDER.set(provider);
        Some(tracing_opentelemetry::layer().with_tracer(tracer))
    }

    pub fn shutdown() {
        if let Some(provider) = PROVIDER.get()
            && let Err(error) = provider.shutdown()
        {
            tracing::warn!(%error, "flushing OpenTelemetry spans failed");
        }
    }
}

#[cfg(not(feature = "otel"))]
mod otel {
    pub fn layer() -> Option<tracing_subscriber::layer::Identity> {
        None
    }

    pub fn shutdown() {}
}
