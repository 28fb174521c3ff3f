//! Shared test support: real servers and real clients, started per test.
//!
//! Every test binary compiles this module but uses only part of it.
#![allow(dead_code)]

pub mod bot;
pub mod client;
pub mod db;
pub mod ejabberd;
pub mod http;
pub mod prosody;
pub mod proxy;
pub mod server;
pub mod world;
