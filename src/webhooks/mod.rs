//! Lifecycle notifications: signed JSON POSTs to one configured receiver, delivered from the
//! durable outbox (`webhook_deliveries`) with retries and exponential backoff.
//!
//! Delivery is at least once: a receiver that answered 2xx never sees the notification
//! again, but an attempt whose answer was lost, or that outlived its lease, is sent again
//! with the same event id, which receivers use to drop duplicates.

pub mod signature;

use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderValue, USER_AGENT};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::Secret;
use crate::store::StoreError;
use crate::store::webhooks::{self, Delivery, WEBHOOK_CHANNEL};

/// Webhook delivery settings: the receiver, the signing secret and the retry limits.
#[derive(Clone, Debug)]
pub struct WebhookSettings {
    pub url: reqwest::Url,
    pub secret: Secret,
    /// How long one POST may take, connection included.
    pub timeout: Duration,
    /// Attempts per notification, the first included, before it is abandoned.
    pub max_attempts: u32,
    /// The delay after the first failure; each further failure doubles it up to `backoff_max`.
    pub backoff_first: Duration,
    pub backoff_max: Duration,
    /// The maximum time the dispatcher sleeps without looking at the outbox, in case a
    /// notification was missed.
    pub poll_interval: Duration,
    /// Notifications sent at the same time.
    pub concurrency: usize,
}

impl WebhookSettings {
    /// Settings with the production delays for `url`, signed with `secret`.
    pub fn new(url: reqwest::Url, secret: Secret) -> Self {
        WebhookSettings {
            url,
            secret,
            timeout: Duration::from_secs(10),
            max_attempts: 40,
            backoff_first: Duration::from_secs(2),
            backoff_max: Duration::from_secs(600),
            poll_interval: Duration::from_secs(30),
            concurrency: 8,
        }
    }

    /// The delay before attempt `attempts + 1`, after `attempts` failed ones, with up to 20%
    /// jitter so receivers coming back are not hit by every replica at once.
    fn backoff(&self, attempts: u32) -> Duration {
        let exponent = attempts.saturating_sub(1).min(30);
        let base = self
            .backoff_first
            .saturating_mul(1u32 << exponent)
            .min(self.backoff_max);
        base.mul_f64(0.8 + 0.2 * rand::random::<f64>())
    }
}

/// Sends the notifications of the outbox until `shutdown`.
pub struct Dispatcher {
    pool: PgPool,
    client: reqwest::Client,
    settings: WebhookSettings,
}

impl Dispatcher {
    pub fn new(pool: PgPool, settings: WebhookSettings) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            // A redirect could carry the signed body somewhere unexpected; it counts as a
            // failed attempt instead.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Dispatcher {
            pool,
            client,
            settings,
        })
    }

    pub async fn run(self, shutdown: CancellationToken) -> Result<(), StoreError> {
        let mut listener = listen(&self.pool).await;
        // Only the host: the URL's path or query may hold a token.
        info!(
            receiver.host = self.settings.url.host_str().unwrap_or(""),
            max_attempts = self.settings.max_attempts,
            "webhook delivery started"
        );
        // Long enough that an attempt always ends before another dispatcher may take over.
        let lease = self.settings.timeout.as_secs_f64() + 30.0;

        loop {
            if shutdown.is_cancelled() {
                break;
            }
            let limit = self.settings.concurrency.max(1);
            let claimed = match webhooks::claim(&self.pool, limit as i64, lease).await {
                Ok(claimed) => claimed,
                Err(error) => {
                    error!(%error, "claiming webhook notifications failed; retrying in a second");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            };
            let full = claimed.len() == limit;
            // A batch is not interrupted by shutdown: each POST ends within the timeout, and
            // an interrupted one would only be sent again after its lease.
            futures::future::join_all(claimed.into_iter().map(|delivery| self.deliver(delivery)))
                .await;
            if full {
                continue;
            }

            let sleep_for = self.sleep_until_due().await;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = receive(&mut listener) => {}
                _ = tokio::time::sleep(sleep_for) => {}
            }
        }
        info!("webhook delivery stopped");
        Ok(())
    }

    async fn sleep_until_due(&self) -> Duration {
        let poll = self.settings.poll_interval;
        match webhooks::seconds_until_next_due(&self.pool).await {
            Ok(Some(seconds)) => Duration::from_secs_f64(seconds.max(0.0)).min(poll),
            Ok(None) => poll,
            Err(error) => {
                error!(%error, "probing for the next webhook notification failed; sleeping a second");
                Duration::from_secs(1)
            }
        }
    }

    /// Makes one attempt and records its result; database errors are logged here because
    /// the attempt's lease makes the notification due again anyway.
    async fn deliver(&self, delivery: Delivery) {
        let attempt = self.post(&delivery).await;
        let result = match attempt {
            Ok(()) => {
                metrics::counter!("cloudfront_lifecycle_webhook_deliveries_total", "outcome" => "delivered").increment(1);
                info!(event.id = %delivery.id, distribution.id = %delivery.distribution_id, event.type = delivery.event_type, attempt = delivery.attempts, "webhook notification delivered");
                webhooks::mark_delivered(&self.pool, delivery.id).await
            }
            Err(failure) if delivery.attempts.max(0) as u32 >= self.settings.max_attempts => {
                metrics::counter!("cloudfront_lifecycle_webhook_deliveries_total", "outcome" => "abandoned").increment(1);
                error!(event.id = %delivery.id, distribution.id = %delivery.distribution_id, event.type = delivery.event_type, attempt = delivery.attempts, error = %failure, "webhook notification abandoned after its last attempt");
                webhooks::abandon(&self.pool, delivery.id, delivery.attempts, &failure).await
            }
            Err(failure) => {
                metrics::counter!("cloudfront_lifecycle_webhook_deliveries_total", "outcome" => "retried").increment(1);
                let retry_in = self.settings.backoff(delivery.attempts.max(1) as u32);
                warn!(event.id = %delivery.id, distribution.id = %delivery.distribution_id, event.type = delivery.event_type, attempt = delivery.attempts, error = %failure, retry_in_seconds = retry_in.as_secs_f64(), "webhook notification failed; retrying after backoff");
                webhooks::schedule_retry(
                    &self.pool,
                    delivery.id,
                    delivery.attempts,
                    retry_in.as_secs_f64(),
                    &failure,
                )
                .await
            }
        };
        if let Err(error) = result {
            error!(event.id = %delivery.id, distribution.id = %delivery.distribution_id, %error, "recording a webhook attempt failed; the notification comes due again when its lease ends");
        }
    }

    /// POSTs one notification. Returns a description of the failure, fit for the log and
    /// the outbox row, when the receiver did not answer 2xx.
    async fn post(&self, delivery: &Delivery) -> Result<(), String> {
        let body = serde_json::to_vec(&delivery.payload).expect("a JSON value serializes");
        let timestamp = chrono::Utc::now().timestamp();
        let signature = signature::sign(self.settings.secret.expose().as_bytes(), timestamp, &body);
        let response = self
            .client
            .post(self.settings.url.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(
                USER_AGENT,
                concat!("cloudfront-lifecycle/", env!("CARGO_PKG_VERSION")),
            )
            .header(signature::ID_HEADER, delivery.id.to_string())
            .header(signature::SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await
            // The URL may hold a token, so it is left out of the message.
            .map_err(|error| format!("request failed: {}", error.without_url()))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the receiver answered HTTP {}", status.as_u16()))
        }
    }
}

async fn listen(pool: &PgPool) -> Option<PgListener> {
    let mut listener = match PgListener::connect_with(pool).await {
        Ok(listener) => listener,
        Err(error) => {
            warn!(%error, "LISTEN connection for webhooks failed; polling the outbox instead");
            return None;
        }
    };
    if let Err(error) = listener.listen(WEBHOOK_CHANNEL).await {
        warn!(%error, "LISTEN for webhooks failed; polling the outbox instead");
        return None;
    }
    Some(listener)
}

/// Waits for an outbox notification; after an error it pauses a second so an outage does not
/// spin the loop, and PgListener reconnects on the next call.
async fn receive(listener: &mut Option<PgListener>) {
    match listener {
        Some(listener) => {
            if let Err(error) = listener.recv().await {
                warn!(%error, "webhook notification channel failed; reconnecting");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> WebhookSettings {
        WebhookSettings::new(
            "http://127.0.0.1:9/".parse().unwrap(),
            "a-webhook-secret-of-at-least-32-characters"
                .parse()
                .unwrap(),
        )
    }

    #[test]
    fn backoff_doubles_to_ceiling() {
        let settings = settings();
        let first = settings.backoff(1);
        assert!(
            first >= Duration::from_millis(1600),
            "first delay {first:?}"
        );
        assert!(first <= Duration::from_secs(2), "first delay {first:?}");
        let fourth = settings.backoff(4);
        assert!(
            fourth >= Duration::from_millis(12_800),
            "fourth delay {fourth:?}"
        );
        assert!(fourth <= Duration::from_secs(16), "fourth delay {fourth:?}");
        let late = settings.backoff(40);
        assert!(late <= Duration::from_secs(600));
        assert!(late >= Duration::from_secs(480));
    }
}
