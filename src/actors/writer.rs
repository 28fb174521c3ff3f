//! One ordered writer per room: a room's database writes never overtake each other.
//!
//! With a connection pool (PostgreSQL, MariaDB) two writes launched one after the other can
//! commit in the opposite order. Each room therefore hands its changes to its own task,
//! which applies them strictly one at a time. A write that fails because the database is
//! unreachable is retried with backoff, in place, so later changes wait behind it: when the
//! database comes back every pending change lands, in order. The actor never waits for the
//! database, so the room keeps following its XMPP dialogue meanwhile. A change that cannot
//! succeed by waiting stops the writer, which drops what is queued and tells the room
//! ([`WriteStopped`]): when the row refuses it (somebody else changed it) the room restarts
//! from the row as it is now; when the database refuses it for good (a constraint, a missing
//! column: [`StoreError::is_transient`]) the row is closed `error` and the room destroyed,
//! instead of a retry loop that would hold back the room's every later change.

use std::time::Duration;

use futures::StreamExt;
use futures::channel::{mpsc, oneshot};

use actix::{Message, Recipient};

use super::committer::Committer;
use super::pool::Replenish;
use crate::backoff::Backoff;
use crate::stats::ChatClock;
use crate::store::{RoomChange, Store, StoreError};

/// Told to the room when its writer stopped because a change cannot be written by waiting;
/// every later change would fail too.
#[derive(Message, Debug, Clone, Copy, PartialEq, Eq)]
#[rtype(result = "()")]
pub enum WriteStopped {
    /// The row is not what the room believed (changed by somebody else, or unreadable): the
    /// room must start again from the row.
    Conflict,
    /// The database refused a change for good; the writer closed the row `error` (where
    /// it could): the room is to be destroyed.
    Failed,
}

/// The sending side of a room's write queue.
#[derive(Debug)]
pub struct RoomWriter {
    queue: Option<mpsc::UnboundedSender<RoomChange>>,
    flushed: Option<oneshot::Receiver<()>>,
}

impl RoomWriter {
    /// Starts the writer task for one room; `written` is told after every committed change
    /// (the pool then counts again: the database now shows the room's new status), and
    /// `stopped` when a change cannot be written by waiting (the writer then stops).
    pub fn start(
        store: Store,
        committer: Committer,
        room: String,
        retry_max: Duration,
        written: Recipient<Replenish>,
        stopped: Recipient<WriteStopped>,
    ) -> RoomWriter {
        let (queue, changes) = mpsc::unbounded();
        let (done, flushed) = oneshot::channel();
        tokio::spawn(async move {
            write_in_order(store, committer, room, changes, retry_max, written, stopped).await;
            let _ = done.send(());
        });
        RoomWriter {
            queue: Some(queue),
            flushed: Some(flushed),
        }
    }

    /// Queues a change behind every change queued before it.
    pub fn push(&self, change: RoomChange) {
        if let Some(queue) = &self.queue {
            // Fails only after `finish`, or after the writer stopped (the room is restarting
            // from its row or being destroyed, and later changes would fail anyway).
            if queue.unbounded_send(change).is_ok() {
                crate::metrics::metrics().pending_writes.inc();
            }
        }
    }

    /// Closes the queue; the returned future resolves when every queued change is written.
    pub fn finish(&mut self) -> impl Future<Output = ()> + 'static {
        self.queue.take();
        let flushed = self.flushed.take();
        async move {
            if let Some(flushed) = flushed {
                let _ = flushed.await;
            }
        }
    }
}

/// Applies changes one at a time (each in the committer's next transaction); retries
/// transient failures with capped exponential backoff.
async fn write_in_order(
    store: Store,
    committer: Committer,
    room: String,
    mut changes: mpsc::UnboundedReceiver<RoomChange>,
    retry_max: Duration,
    written: Recipient<Replenish>,
    stopped: Recipient<WriteStopped>,
) {
    let metrics = crate::metrics::metrics();
    // Set from the first change: a room that was not `available` any more (recovered after
    // a restart) has its entries in the history, read once.
    let mut clock: Option<ChatClock> = None;
    while let Some(change) = changes.next().await {
        let clock = match &mut clock {
            Some(clock) => clock,
            None if ChatClock::needs_history(&change) => {
                let events = store.events(change.room_id).await.unwrap_or_else(|error| {
                    log::warn!(room = room.as_str();
                        "cannot read the room's history for its wait and chat times: {error}");
                    Vec::new()
                });
                clock.insert(ChatClock::from_history(&events))
            }
            None => clock.insert(ChatClock::default()),
        };
        let mut waits = Backoff::new(Duration::from_millis(100), retry_max).waits();
        loop {
            match committer.apply(change.clone()).await {
                Ok(()) => {
                    metrics.observe_commit(&change, crate::store::now());
                    metrics.observe_chat(&clock.on_commit(&change));
                    written.do_send(Replenish);
                    break;
                }
                Err(error @ (StoreError::Conflict { .. } | StoreError::BadRow { .. })) => {
                    // Somebody else changed the row. Retrying cannot help, and every change
                    // queued behind this one assumed it: drop them all, and let the room
                    // start again from the row.
                    metrics.write_conflicts.inc();
                    log::error!(room = room.as_str();
                        "database row disagrees with the bot ({error}); change {} {}→{} not \
                         written; the room starts again from its row",
                        change.kind, change.from, change.to);
                    stop(&mut changes, metrics).await;
                    stopped.do_send(WriteStopped::Conflict);
                    return;
                }
                Err(error) if !error.is_transient() => {
                    metrics.write_failures.inc();
                    log::error!(room = room.as_str();
                        "the database refused change {} {}→{} for good: {}; closing the room \
                         as error", change.kind, change.from, change.to, crate::logging::chain(&error));
                    stop(&mut changes, metrics).await;
                    // ASCII only: the close must not fail on its own text where the
                    // database cannot store every character (a `latin1` table).
                    let detail = format!(
                        "the database refused a change ({} to {})",
                        change.from, change.to
                    );
                    match store
                        .close_as_error(change.room_id, crate::store::now(), &detail)
                        .await
                    {
                        Ok(_) => written.do_send(Replenish),
                        Err(error) => log::error!(room = room.as_str();
                            "cannot close the room's row as error either: {}",
                            crate::logging::chain(&error)),
                    }
                    stopped.do_send(WriteStopped::Failed);
                    return;
                }
                Err(error) => {
                    let delay = waits.next().expect("backoff waits never end");
                    log::warn!(room = room.as_str();
                        "database write failed ({error}); retrying in {delay:?}");
                    metrics.write_retries.inc();
                    tokio::time::sleep(delay).await;
                }
            }
        }
        metrics.pending_writes.dec();
    }
}

/// Closes the queue and drops what is still in it (the change that failed included).
async fn stop(
    changes: &mut mpsc::UnboundedReceiver<RoomChange>,
    metrics: &crate::metrics::Metrics,
) {
    metrics.pending_writes.dec();
    changes.close();
    while let Some(_dropped) = changes.next().await {
        metrics.pending_writes.dec();
    }
}
