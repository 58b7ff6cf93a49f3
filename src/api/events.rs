//! `/v1/distributions/{id}/events` and `/watch`: a distribution's history, as a list and as
//! a live Server-Sent Events stream.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tracing::{Instrument, debug, warn};
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::auth::Owner;
use super::error::{ApiError, Problem};
use super::extract::Path;
use crate::lifecycle::Status;
use crate::live::Change;
use crate::store::events::{self, Event};
use crate::store::{StoreError, distributions};

/// History rows sent per database read; a longer backlog is read in several rounds.
const BATCH: i64 = 100;

/// How often a watcher re-reads even without a notification, in case one was missed.
const POLL_INTERVAL: Duration = Duration::from_secs(10);

/// One status change (or change of intent) of a distribution.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventView {
    /// Increases with every event; the SSE event id, and the value to send as Last-Event-ID.
    pub id: i64,
    /// Absent on the first event.
    pub from_status: Option<Status>,
    pub to_status: Status,
    #[schema(example = "deletion requested")]
    pub reason: String,
    pub created_at: DateTime<Utc>,
}

impl TryFrom<Event> for EventView {
    type Error = StoreError;

    fn try_from(event: Event) -> Result<Self, StoreError> {
        let parse = |value: &str| {
            Status::parse(value).ok_or_else(|| StoreError::Corrupt {
                id: event.distribution_id,
                detail: format!("history row {} has unknown status {value:?}", event.id),
            })
        };
        Ok(EventView {
            id: event.id,
            from_status: event.from_status.as_deref().map(parse).transpose()?,
            to_status: parse(&event.to_status)?,
            reason: event.reason.clone(),
            created_at: event.created_at,
        })
    }
}

/// A distribution's history, oldest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventList {
    pub items: Vec<EventView>,
}

/// The data of one `transition` event on the watch stream.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WatchMessage {
    pub event: EventView,
    /// The distribution's status when the event was sent, which may be later than the
    /// event's own `to_status` while a backlog is replayed.
    pub status: Status,
}

/// List a distribution's history
#[utoipa::path(
    get,
    path = "/v1/distributions/{id}/events",
    tag = "distributions",
    params(("id" = Uuid, Path, description = "The distribution's id")),
    responses(
        (status = 200, description = "Every status change, oldest first", body = EventList),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such distribution for this owner", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    Owner(owner): Owner,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<EventList>, ApiError> {
    distributions::get_for_owner(&state.pool, id, &owner)
        .await?
        .ok_or(ApiError::NotFound)?;
    let items = events::list(&state.pool, id)
        .await?
        .into_iter()
        .map(EventView::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(axum::Json(EventList { items }))
}

/// Watch a distribution's status live
///
/// A Server-Sent Events stream of `transition` events: first the history (after
/// `Last-Event-ID` when given), then each change as it commits, on any replica. Each event's
/// id is the history row's id and its data is a `WatchMessage`. The stream ends once the
/// distribution has reached a final status with nothing left to do (`deployed`, `deleted`,
/// `disabled` or `failed`). A client that reconnects with the last id it received misses
/// nothing and receives nothing twice.
#[utoipa::path(
    get,
    path = "/v1/distributions/{id}/watch",
    tag = "distributions",
    params(
        ("id" = Uuid, Path, description = "The distribution's id"),
        ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this event id"),
    ),
    responses(
        (status = 200, description = "`transition` events whose data is a WatchMessage", content_type = "text/event-stream", body = String),
        (status = 400, description = "The id is not a UUID, or Last-Event-ID is not an event id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such distribution for this owner", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn watch(
    State(state): State<AppState>,
    Owner(owner): Owner,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let after = last_event_id(&headers)?;
    distributions::get_for_owner(&state.pool, id, &owner)
        .await?
        .ok_or(ApiError::NotFound)?;

    // Subscribe before the first read, so a change committed in between is not missed.
    let changes = state.events.subscribe();
    let (sender, receiver) = mpsc::channel(16);
    let stream = Watch {
        pool: state.pool.clone(),
        id,
        after,
        changes,
        sender,
    };
    let shutdown = state.events.shutdown().clone();
    tokio::spawn(
        async move {
            metrics::gauge!("cloudfront_lifecycle_watch_streams").increment(1.0);
            tokio::select! {
                _ = shutdown.cancelled() => debug!("watch stream closed by shutdown"),
                _ = stream.run() => {}
            }
            metrics::gauge!("cloudfront_lifecycle_watch_streams").decrement(1.0);
        }
        .instrument(tracing::Span::current()),
    );
    Ok(Sse::new(ReceiverStream::new(receiver))
        .keep_alive(KeepAlive::default())
        .into_response())
}

fn last_event_id(headers: &HeaderMap) -> Result<i64, ApiError> {
    let Some(value) = headers.get("last-event-id") else {
        return Ok(0);
    };
    value
        .to_str()
        .ok()
        .and_then(|text| text.trim().parse::<i64>().ok())
        .filter(|id| *id >= 0)
        .ok_or_else(|| {
            ApiError::InvalidParameter(
                "Last-Event-ID must be the id of an event this stream sent (a non-negative integer)"
                    .to_owned(),
            )
        })
}

/// One client's stream: sends history rows after `after` until the row is settled.
struct Watch {
    pool: PgPool,
    id: Uuid,
    after: i64,
    changes: broadcast::Receiver<Change>,
    sender: mpsc::Sender<Result<SseEvent, Infallible>>,
}

impl Watch {
    async fn run(mut self) {
        loop {
            let progress = match events::progress_after(&self.pool, self.id, self.after, BATCH)
                .await
            {
                Ok(Some(progress)) => progress,
                Ok(None) => return,
                Err(error) => {
                    warn!(distribution.id = %self.id, after_event = self.after, %error, "reading history for a watch stream failed; retrying in a second");
                    if self.pause(Duration::from_secs(1)).await {
                        continue;
                    }
                    return;
                }
            };
            let Some(status) = Status::parse(&progress.status) else {
                warn!(distribution.id = %self.id, status = progress.status, "watch stream closed: the row has an unknown status");
                return;
            };

            let complete = (progress.events.len() as i64) < BATCH;
            for event in progress.events {
                let event_id = event.id;
                let view = match EventView::try_from(event) {
                    Ok(view) => view,
                    Err(error) => {
                        warn!(distribution.id = %self.id, event_id, %error, "watch stream closed at an unreadable history row");
                        return;
                    }
                };
                let message = WatchMessage {
                    event: view,
                    status,
                };
                let sse = SseEvent::default()
                    .id(event_id.to_string())
                    .event("transition")
                    .json_data(&message)
                    .expect("a watch message serializes");
                if self.sender.send(Ok(sse)).await.is_err() {
                    return;
                }
                self.after = event_id;
            }

            if !complete {
                continue;
            }
            if status.is_final() && progress.idle {
                debug!(distribution.id = %self.id, %status, "watch stream finished");
                return;
            }
            if !self.wait_for_change().await {
                return;
            }
        }
    }

    /// Waits for a notification about this distribution (or a reason to re-read anyway).
    /// Returns false when the client has gone.
    async fn wait_for_change(&mut self) -> bool {
        let poll = tokio::time::sleep(POLL_INTERVAL);
        tokio::pin!(poll);
        loop {
            tokio::select! {
                _ = self.sender.closed() => return false,
                _ = &mut poll => return true,
                change = self.changes.recv() => match change {
                    Ok(Change::Distribution(id)) if id != self.id => {}
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => return true,
                    Err(broadcast::error::RecvError::Closed) => {
                        // The listener is gone; polling alone still delivers every event.
                        (&mut poll).await;
                        return true;
                    }
                },
            }
        }
    }

    /// Sleeps unless the client leaves first; returns false when it has.
    async fn pause(&self, duration: Duration) -> bool {
        tokio::select! {
            _ = self.sender.closed() => false,
            _ = tokio::time::sleep(duration) => true,
        }
    }
}
