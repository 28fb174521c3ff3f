//! Shared test support: real servers and real clients, started per test.
//!
//! Every test binary compiles this module but uses only part of it.
#![allow(dead_code)]

/// Generates one test per XMPP server for each scenario (`prosody::…`, `ejabberd::…`): each
/// scenario is an `async fn(ServerKind)`, and `ServerKind` must be in scope where this is
/// used (`#[macro_use] mod common;`).
#[allow(unused_macros)]
macro_rules! on_every_server {
    ($($name:ident),+ $(,)?) => {
        mod prosody {
            $(#[tokio::test] async fn $name() { super::$name(super::ServerKind::Prosody).await })+
        }
        mod ejabberd {
            $(#[tokio::test] async fn $name() { super::$name(super::ServerKind::Ejabberd).await })+
        }
    };
}

pub mod bot;
pub mod client;
pub mod db;
pub mod ejabberd;
pub mod http;
pub mod prosody;
pub mod proxy;
pub mod server;
pub mod world;
