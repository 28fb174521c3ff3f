//! The actix actors: the only glue between XMPP, the lifecycle and the database.
//!
//! - [`SupervisorActor`](supervisor::SupervisorActor) owns the XMPP session and routes;
//! - [`PoolActor`](pool::PoolActor) keeps the pool of ready rooms topped up;
//! - [`RoomActor`](room::RoomActor) follows one room from creation to destruction;
//! - [`RoomWriter`](writer::RoomWriter) persists one room's changes in order, through the
//!   [`Committer`](batch::Committer), which writes the changes of many rooms in one
//!   transaction.

pub mod batch;
pub mod pool;
pub mod room;
pub mod supervisor;
pub mod writer;
