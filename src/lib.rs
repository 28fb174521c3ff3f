//! helpim-bot: the room-managing XMPP bot of an online helpline.
//!
//! The bot keeps a pool of password-protected multi-user chat rooms (XEP-0045) ready on the
//! XMPP server, records every room in a database that the helpline's web application reads
//! and claims from, follows each room through its life (`available` → `staff_waiting` →
//! `chatting` → `one_left` → `closed`) and destroys it when the chat is over.
//!
//! Layers, each knowing only those below it:
//! - [`actors`]: the actix actors that glue everything together;
//! - [`lifecycle`]: the pure room state machine;
//! - [`store`]: typed queries over the SeaORM entities, with [`quarantine`] for the rows it
//!   cannot decode;
//! - [`xmpp`]: the connection task and the stanza builders and parsers;
//! - [`config`]: raw TOML → validated settings; [`model`]: the shared vocabulary.
#![deny(missing_docs)]

pub mod actors;
pub mod app;
pub mod claims;
pub mod config;
pub mod db_fault;
pub mod http;
pub mod lease;
pub mod lifecycle;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod quarantine;
pub mod retention;
pub mod stats;
pub mod store;
pub mod throttle;
pub mod xmpp;
