//! helpim-bot: the room-managing XMPP bot of an online helpline.
//!
//! The bot keeps a pool of password-protected multi-user chat rooms (XEP-0045) ready on the
//! XMPP server, records every room in a database that the helpline's web application reads
//! and claims from, follows each room through its life (`available` → `staff_waiting` →
//! `chatting` → `one_left` → `closed`) and destroys it when the chat is over.
//!
//! Layers, each knowing only those below it (every module is in one):
//! - the binary (`main.rs`): arguments, the commands, errors printed with their causes;
//! - [`app`]: start-up and shutdown (database, session, actors, signals);
//! - [`actors`]: the actix actors and the write tasks that glue everything together;
//!   [`http`]: metrics, probes and the status page, which only read;
//! - [`lifecycle`]: the pure room state machine;
//! - the data side: [`store`] (typed queries over the SeaORM entities, with [`quarantine`]
//!   for the rows it cannot decode and [`db_errors`] to sort what the database said), and
//!   the modules that own the statements of their own concern: [`claims`] (the web-app
//!   contract), [`lease`] (one process per bot JID), [`retention`] (the purge), [`stats`]
//!   (figures from the history);
//! - the XMPP side: [`xmpp`] (the connection task, stanza builders and parsers) and
//!   [`throttle`] (noticing a server that slows the bot down);
//! - what every layer uses: [`config`] (raw TOML → validated settings), [`model`] (the
//!   shared vocabulary), [`metrics`] (the registry the actors update), [`readiness`] (the
//!   one answer to "ready?"), [`report`] (durations and text tables for people),
//!   [`texts`] (the words people in rooms read), [`logging`] (lines and per-room files), [`systemd`] (the notify protocol), [`backoff`]
//!   (every retry's waits).
#![deny(missing_docs)]

pub mod actors;
pub mod app;
pub mod backoff;
pub mod claims;
pub mod config;
pub mod db_errors;
pub mod http;
pub mod lease;
pub mod lifecycle;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod quarantine;
pub mod readiness;
pub mod report;
pub mod retention;
pub mod stats;
pub mod store;
pub mod systemd;
pub mod texts;
pub mod throttle;
pub mod xmpp;
