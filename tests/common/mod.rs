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

/// Generates one test per XMPP server and database for each scenario (`prosody_sqlite::…`,
/// `prosody_postgres::…`, `ejabberd_sqlite::…`, `ejabberd_postgres::…`): each scenario is an
/// `async fn(ServerKind, Backend)`, and both types must be in scope where this is used
/// (`#[macro_use] mod common;`). MariaDB runs where its SQL differs (the claim and store
/// suites), not here: the room actors' reads and writes are the same SeaORM code on all three.
#[allow(unused_macros)]
macro_rules! on_every_server_and_backend {
    ($($name:ident),+ $(,)?) => {
        on_every_server_and_backend!(@module prosody_sqlite, Prosody, SqliteFile; $($name),+);
        on_every_server_and_backend!(@module prosody_postgres, Prosody, Postgres; $($name),+);
        on_every_server_and_backend!(@module ejabberd_sqlite, Ejabberd, SqliteFile; $($name),+);
        on_every_server_and_backend!(@module ejabberd_postgres, Ejabberd, Postgres; $($name),+);
    };
    (@module $module:ident, $server:ident, $backend:ident; $($name:ident),+) => {
        mod $module {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::ServerKind::$server, super::Backend::$backend).await
                }
            )+
        }
    };
}

pub mod bot;
pub mod client;
pub mod cluster;
pub mod db;
pub mod ejabberd;
pub mod http;
pub mod prosody;
pub mod proxy;
pub mod raw;
pub mod server;
pub mod world;
