//! The glue between XMPP, the lifecycle and the database: three actix actors and two tokio
//! tasks.
//!
//! Actors (one small file each, their messages beside them):
//! - [`SupervisorActor`](supervisor::SupervisorActor) owns the XMPP session and routes;
//! - [`PoolActor`](pool::PoolActor) keeps the pool of ready rooms topped up;
//! - [`RoomActor`](room::RoomActor) follows one room from creation to destruction.
//!
//! Tasks (plain tokio tasks, which await the database without holding up an actor):
//! - [`RoomWriter`](writer::RoomWriter) persists one room's changes in order, through the
//!   [`Committer`](committer::Committer), which writes the changes of many rooms in one
//!   transaction.

pub mod committer;
pub mod pool;
pub mod room;
pub mod supervisor;
pub mod writer;
