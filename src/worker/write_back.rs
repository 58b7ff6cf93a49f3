//! Group commit of write-backs: the results of checks that finish at about the same time are
//! written in one statement, each still fenced by its own lease token.
//!
//! A background task takes a write-back as soon as one arrives and sends it together with
//! every other one already queued. While [`MAX_STATEMENTS_IN_FLIGHT`] statements are running,
//! new write-backs wait in the queue and go out together in the next statement, so batches
//! grow with the load and a lone write-back waits for no timer.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use sqlx::PgPool;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tracing::warn;
use uuid::Uuid;

use crate::store::StoreError;
use crate::store::claims::{self, WriteBack};

/// Batch statements one process runs at the same time. Two keep one batch filling while the
/// other is on the database.
const MAX_STATEMENTS_IN_FLIGHT: usize = 2;

/// Write-backs one statement carries at most.
const MAX_BATCH: usize = 256;

/// A write-back waiting for its statement, and where its outcome goes.
struct Pending {
    id: Uuid,
    lease_token: i64,
    update: WriteBack,
    reply: oneshot::Sender<Result<bool, StoreError>>,
}

/// The queue the checks of one worker send their write-backs to. Its task starts with the
/// first write-back, on the runtime that sends it, and ends when the queue is dropped.
pub struct WriteBackQueue {
    pool: PgPool,
    sender: OnceLock<mpsc::UnboundedSender<Pending>>,
}

impl WriteBackQueue {
    pub fn new(pool: PgPool) -> Self {
        WriteBackQueue {
            pool,
            sender: OnceLock::new(),
        }
    }

    /// Writes a check's result under its lease, batched with others, and returns whether
    /// it was written (false when the lease was lost), as [`claims::write_back`] does.
    pub async fn write(
        &self,
        id: Uuid,
        lease_token: i64,
        update: WriteBack,
    ) -> Result<bool, StoreError> {
        let sender = self.sender.get_or_init(|| {
            let (sender, receiver) = mpsc::unbounded_channel();
            tokio::spawn(run(self.pool.clone(), receiver));
            sender
        });
        let (reply, outcome) = oneshot::channel();
        let pending = Pending {
            id,
            lease_token,
            update,
            reply,
        };
        if let Err(mpsc::error::SendError(pending)) = sender.send(pending) {
            // The task is gone (its runtime shut down), so nothing of this write-back was
            // sent and writing it here is safe.
            return claims::write_back(&self.pool, id, lease_token, &pending.update).await;
        }
        match outcome.await {
            Ok(result) => result,
            // The task stopped after taking this write-back, so it may or may not have been
            // written. The caller treats this like any failed write: the row comes due again
            // when its lease ends.
            Err(_) => Err(StoreError::Database(sqlx::Error::WorkerCrashed)),
        }
    }
}

/// Takes write-backs off the queue and sends each batch as soon as a statement slot is free.
async fn run(pool: PgPool, mut receiver: mpsc::UnboundedReceiver<Pending>) {
    let slots = Arc::new(Semaphore::new(MAX_STATEMENTS_IN_FLIGHT));
    while let Some(first) = receiver.recv().await {
        let permit = slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");

        // Everything that queued while the slot was busy goes out with the first.
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(pending) => batch.push(pending),
                Err(_) => break,
            }
        }

        let pool = pool.clone();
        tokio::spawn(async move {
            write_batch(&pool, batch).await;
            drop(permit);
        });
    }
}

/// Writes one batch and replies to every check in it.
async fn write_batch(pool: &PgPool, batch: Vec<Pending>) {
    // An id repeated in one batch (a row claimed again after its lease ran out under a slow
    // check) is written on its own afterwards, so no statement contains a row twice.
    let mut ids = HashSet::with_capacity(batch.len());
    let (unique, repeated): (Vec<Pending>, Vec<Pending>) = batch
        .into_iter()
        .partition(|pending| ids.insert(pending.id));

    if unique.len() == 1 {
        write_each(pool, unique).await;
    } else {
        let entries: Vec<(Uuid, i64, &WriteBack)> = unique
            .iter()
            .map(|pending| (pending.id, pending.lease_token, &pending.update))
            .collect();
        match claims::write_back_many(pool, &entries).await {
            Ok(written) => {
                let written: HashSet<Uuid> = written.into_iter().collect();
                for pending in unique {
                    let _ = pending.reply.send(Ok(written.contains(&pending.id)));
                }
            }
            // The server rejected the statement, so none of it was written. One bad row (a
            // constraint it breaks, say) must not fail its neighbours: write each alone.
            Err(StoreError::Database(sqlx::Error::Database(error))) => {
                let ids: Vec<Uuid> = unique.iter().map(|pending| pending.id).collect();
                warn!(%error, distribution.ids = ?ids, "batched write-back failed; writing each row on its own");
                write_each(pool, unique).await;
            }
            // Without a response from the server the batch may or may not have been written,
            // so it is not sent again. Every check gets the error and logs it with its row's
            // id, and its row comes due again when its lease ends.
            Err(error) => {
                let message = error.to_string();
                for pending in unique {
                    let error = std::io::Error::other(message.clone());
                    let _ = pending
                        .reply
                        .send(Err(StoreError::Database(sqlx::Error::Io(error))));
                }
            }
        }
    }

    write_each(pool, repeated).await;
}

async fn write_each(pool: &PgPool, pending: Vec<Pending>) {
    for pending in pending {
        let result =
            claims::write_back(pool, pending.id, pending.lease_token, &pending.update).await;
        let _ = pending.reply.send(result);
    }
}
