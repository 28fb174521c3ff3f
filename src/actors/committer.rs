//! Group commit: the changes of many rooms written in one transaction.
//!
//! Every room has its own ordered writer ([`super::writer`]), and in a burst (two hundred
//! people entering at once, a shift ending) hundreds of them want to commit at the same
//! moment. One transaction each means one commit each: on SQLite the writers queue for the
//! file's one write lock, on PostgreSQL for the lock every transaction that sends a NOTIFY
//! takes at commit, and the last change of a burst waits for all the others. The
//! [`Committer`] takes whatever changes are waiting when it is free, writes them in one
//! transaction ([`Store::apply_many`]) and answers each writer on its own. Each room's
//! writer still sends one change at a time and waits for its answer, so a room's changes
//! keep their order; only changes of different rooms share a transaction.

use std::sync::Arc;

use futures::StreamExt;
use futures::channel::{mpsc, oneshot};
use sea_orm::DatabaseBackend;
use tokio::sync::Semaphore;

use crate::store::{RoomChange, Store, StoreError};

/// Most changes in one transaction: a bound on how long one commit holds a connection.
const MAX_BATCH: usize = 64;

/// Transactions in flight at once on PostgreSQL and MariaDB: each statement of a batch is a
/// round trip (a handful per batch on PostgreSQL, one per room on MariaDB), so batches run
/// side by side on the pool's connections (five; one is left for reads). SQLite has one
/// writer at a time whatever the bot does: one.
const NETWORK_LANES: usize = 4;

/// A change waiting for its transaction, and where its result goes.
type Queued = (RoomChange, oneshot::Sender<Result<(), StoreError>>);

/// The handle room writers commit through; cheap to clone.
#[derive(Debug, Clone)]
pub struct Committer {
    queue: mpsc::UnboundedSender<Queued>,
    store: Store,
}

impl Committer {
    /// Starts the committing task on the current runtime.
    pub fn start(store: Store) -> Committer {
        let (queue, changes) = mpsc::unbounded();
        let lanes = match store.connection().get_database_backend() {
            DatabaseBackend::Sqlite => 1,
            _ => NETWORK_LANES,
        };
        tokio::spawn(commit_in_batches(store.clone(), changes, lanes));
        Committer { queue, store }
    }

    /// Writes `change` in the next transaction and returns its own result: `Ok` once it is
    /// committed, [`StoreError::Conflict`] when its row disagrees (nothing of it written),
    /// or the error that kept it from being written.
    pub async fn apply(&self, change: RoomChange) -> Result<(), StoreError> {
        let (reply, result) = oneshot::channel();
        if let Err(refused) = self.queue.unbounded_send((change, reply)) {
            // The task is gone (the runtime is shutting down): write it alone.
            let (change, _) = refused.into_inner();
            return self.store.apply(&change).await;
        }
        result.await.unwrap_or_else(|_| {
            Err(StoreError::Interrupted(
                "the committing task ended before the change's transaction did".into(),
            ))
        })
    }
}

/// Once a lane is free, takes every change waiting (up to [`MAX_BATCH`]) and writes them in
/// one transaction on that lane; changes that come meanwhile wait for the next free lane.
async fn commit_in_batches(
    store: Store,
    mut changes: mpsc::UnboundedReceiver<Queued>,
    lanes: usize,
) {
    let lanes = Arc::new(Semaphore::new(lanes));
    while let Some(first) = changes.next().await {
        let lane = lanes.clone().acquire_owned().await.expect("never closed");
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match changes.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let store = store.clone();
        tokio::spawn(async move {
            commit(&store, batch).await;
            drop(lane);
        });
    }
}

/// Writes one batch and answers each of its changes.
async fn commit(store: &Store, mut batch: Vec<Queued>) {
    if batch.len() == 1 {
        let (change, reply) = batch.pop().expect("one change");
        let _ = reply.send(store.apply(&change).await);
        return;
    }
    let (queued, replies): (Vec<RoomChange>, Vec<_>) = batch.into_iter().unzip();
    match store.apply_many(&queued).await {
        Ok(results) => {
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(result);
            }
        }
        // The connection failed: nothing was written, every writer retries after its
        // backoff (and its change comes back in a later batch).
        Err(error) if error.is_transient() => {
            let cause = crate::logging::chain(&error);
            for reply in replies {
                let _ = reply.send(Err(StoreError::Interrupted(cause.clone())));
            }
        }
        // One change the database refuses for good rolled the whole batch back: each change
        // alone, so that only the one at fault fails.
        Err(error) => {
            log::debug!(
                "a batch of {} changes failed ({}); writing them one by one",
                queued.len(),
                crate::logging::chain(&error)
            );
            for (change, reply) in queued.iter().zip(replies) {
                let _ = reply.send(store.apply(change).await);
            }
        }
    }
}
