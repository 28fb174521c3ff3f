//! The server set-ups the benchmarks compare, started from the test configs with one
//! setting changed, what `/proc` tells of a process (CPU time, resident memory), and the
//! runtime and environment helpers every benchmark uses.

// Each benchmark uses part of this module.
#![allow(dead_code)]

use crate::common::ejabberd::TestEjabberd;
use crate::common::prosody::TestProsody;
use crate::common::server::XmppServer;

/// The server set-ups compared.
#[derive(Clone, Copy, Debug)]
pub enum Setup {
    /// The test config with `muc_room_cache_size` raised above every pool size.
    ProsodyTuned,
    /// The test config with Prosody's default `muc_room_cache_size` (100).
    ProsodyStockCache,
    /// The test config of ejabberd, `max_user_conferences` raised above every pool size.
    Ejabberd,
}

impl Setup {
    pub fn name(self) -> &'static str {
        match self {
            Setup::ProsodyTuned => "Prosody, cache 20 000",
            Setup::ProsodyStockCache => "Prosody, cache 100 (default)",
            Setup::Ejabberd => "ejabberd 23.01",
        }
    }
}

/// A running server of either kind, kept by its concrete type for its pid.
pub enum Server {
    Prosody(TestProsody),
    Ejabberd(TestEjabberd),
}

impl Server {
    /// The server of `setup`, started with its setting changed in its config file.
    pub fn start(setup: Setup) -> Server {
        match setup {
            Setup::Ejabberd => {
                let mut server = TestEjabberd::start();
                server.stop();
                replace_line(
                    &server.dir().join("ejabberd.yml"),
                    "max_user_conferences: 1000",
                    "max_user_conferences: 20000",
                );
                server.start_again();
                Server::Ejabberd(server)
            }
            _ => {
                let mut server = TestProsody::start();
                server.stop();
                let cache = match setup {
                    Setup::ProsodyTuned => "20000",
                    _ => "100",
                };
                replace_line(
                    server.config_file(),
                    "muc_room_cache_size = 1000",
                    &format!("muc_room_cache_size = {cache}"),
                );
                server.start_again();
                Server::Prosody(server)
            }
        }
    }

    pub fn as_dyn(&self) -> &dyn XmppServer {
        match self {
            Server::Prosody(s) => s,
            Server::Ejabberd(s) => s,
        }
    }

    pub fn pid(&self) -> u32 {
        match self {
            Server::Prosody(s) => s.pid(),
            Server::Ejabberd(s) => s.pid(),
        }
        .expect("the server runs")
    }
}

/// Replaces `line` in the config `file` by `with`; panics if the test config no longer has
/// that line.
fn replace_line(file: &std::path::Path, line: &str, with: &str) {
    let config = std::fs::read_to_string(file).expect("the server's config");
    assert!(
        config.contains(line),
        "{} no longer has {line:?}",
        file.display()
    );
    std::fs::write(file, config.replace(line, with)).expect("the server's config");
}

/// Resident memory of a process, in KiB, from /proc.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// User plus system CPU time of process `pid`, in milliseconds (`/proc/<pid>/stat` fields
/// 14 and 15, in clock ticks of 10 ms).
pub fn cpu_ms(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may hold spaces: count from after its closing parenthesis.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    (ticks(11) + ticks(12)) * 10.0
}

/// Busy and total CPU time of the whole machine so far, in clock ticks (`/proc/stat`'s
/// `cpu` line: idle and iowait are not busy).
pub fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let line = stat.lines().next().unwrap_or_default();
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = ticks.iter().sum();
    let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// The share of the machine's CPU (all cores) that was busy between two
/// [`machine_ticks`] readings.
pub fn machine_busy(before: (u64, u64), after: (u64, u64)) -> f64 {
    (after.0 - before.0) as f64 / (after.1 - before.1).max(1) as f64
}

/// Runs a benchmark's `main` future on a single-threaded runtime, as the benchmarks do.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(future)
}

/// A number from the environment variable `var`, or `default`.
pub fn env_number(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
