//! Who a process is, as written in the lease row, and how a holder is proved dead: a
//! random token, the pid and host, and, from `/proc`, the process scope (boot id and pid
//! namespace) and start time. A pid alone proves nothing.

use entity::bot_instance;

/// Who this process is, as written in the lease row.
pub(super) struct Identity {
    /// Random, so that a restarted process (same host, maybe the same pid) is a new holder.
    pub(super) token: String,
    /// For operators, and with `scope` and `start` for proving a holder dead.
    pub(super) pid: i64,
    /// For operators only.
    pub(super) host: String,
    /// [`process_scope`] of this process.
    pub(super) scope: Option<String>,
    /// [`process_start`] of this process.
    pub(super) start: Option<i64>,
}

impl Identity {
    /// A fresh random token (128 bits from the OS-seeded CSPRNG), this pid, host name,
    /// process scope and start time.
    pub(super) fn of_this_process() -> Identity {
        use rand::RngExt;
        let pid = i64::from(std::process::id());
        Identity {
            token: format!("{:032x}", rand::rng().random::<u128>()),
            pid,
            host: host_name(),
            scope: process_scope(),
            start: process_start(pid),
        }
    }
}

/// The boot id and pid namespace of this process: processes with the same scope see the
/// same pids. `None` where `/proc` does not tell (then no holder is ever proved dead by pid).
pub(super) fn process_scope() -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let namespace = std::fs::read_link("/proc/self/ns/pid").ok()?;
    Some(format!("{} {}", boot.trim(), namespace.display()))
}

/// When process `pid` started, in clock ticks after boot (`/proc/<pid>/stat`, field 22);
/// `None` when no such process runs (in this pid namespace).
pub(super) fn process_start(pid: i64) -> Option<i64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

/// Field 22 of a `/proc/<pid>/stat` line; the command (field 2) may hold spaces and
/// parentheses, so fields are counted after its last `)`.
pub(super) fn parse_start_time(stat: &str) -> Option<i64> {
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Why the holder of `row` is certainly dead, if this process can prove it: it ran in the
/// same process scope (same boot, same pid namespace, same host), and its pid now runs no
/// process, or another one (another start time). A pid alone proves nothing.
pub(super) fn dead_here(me: &Identity, row: &bot_instance::Model) -> Option<String> {
    let scope = me.scope.as_deref()?;
    if row.process_scope.as_deref() != Some(scope) || row.host != me.host {
        return None;
    }
    let started = row.process_start?;
    match process_start(row.pid) {
        None => Some(format!("pid {} is no longer running on this host", row.pid)),
        Some(now) if now != started => Some(format!(
            "pid {} is another process now (started at tick {now}, the holder at {started})",
            row.pid
        )),
        Some(_) => None,
    }
}

/// This machine's host name, for the operator's messages only: the kernel's, else
/// `/etc/hostname` (when a sandbox hides `/proc/sys`), else `$HOSTNAME`, else `unknown`.
fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .into_iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .chain(std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .find(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}
