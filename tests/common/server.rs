//! What tests need of an XMPP server, whichever server it is (Prosody or ejabberd).
//!
//! Scenarios take a `&dyn XmppServer` (or start one with [`start`]) so that the same test
//! runs against every server the bot supports.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rand::RngExt;

/// The XMPP servers the bot supports, each with a test harness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// Prosody 0.12 ([`super::prosody::TestProsody`]).
    Prosody,
    /// ejabberd 23.01 ([`super::ejabberd::TestEjabberd`]).
    Ejabberd,
}

impl ServerKind {
    /// Every supported server.
    pub const ALL: [ServerKind; 2] = [ServerKind::Prosody, ServerKind::Ejabberd];

    /// Short name for messages ("prosody", "ejabberd").
    pub fn name(self) -> &'static str {
        match self {
            ServerKind::Prosody => "prosody",
            ServerKind::Ejabberd => "ejabberd",
        }
    }
}

/// Starts a fresh test server of this kind (own directory, own free loopback port), ready
/// to accept connections; panics with the server's log (or the install command) otherwise.
pub fn start(kind: ServerKind) -> Box<dyn XmppServer> {
    match kind {
        ServerKind::Prosody => Box::new(super::prosody::TestProsody::start()),
        ServerKind::Ejabberd => Box::new(super::ejabberd::TestEjabberd::start()),
    }
}

/// A test XMPP server on loopback, plaintext.
pub trait XmppServer {
    /// Short name for messages ("prosody", "ejabberd").
    fn name(&self) -> &'static str;
    /// Which server this is.
    fn kind(&self) -> ServerKind;
    /// The client-to-server port on 127.0.0.1.
    fn port(&self) -> u16;
    /// The user domain, e.g. `localhost`.
    fn domain(&self) -> &str;
    /// The MUC service domain, e.g. `conference.localhost`.
    fn muc_domain(&self) -> &str;
    /// Creates an account (works while the server runs); panics with the output on failure.
    fn register(&self, user: &str, password: &str);
    /// `user@domain`.
    fn jid(&self, user: &str) -> String {
        format!("{user}@{}", self.domain())
    }
    /// The end of the server's log, for failure messages.
    fn log_tail(&self, lines: usize) -> String;
    /// Stops the server cleanly (clients see their streams closed); nothing if stopped.
    fn stop(&mut self);
    /// Starts a stopped server again on the same port with the same accounts.
    fn start_again(&mut self);
    /// Whether the room configuration form has `muc#roomconfig_maxusers`, so that the
    /// server itself refuses a newcomer to a full room (ejabberd: `resource-constraint`);
    /// without it (Prosody) the bot's kick is what keeps a chat to its size.
    fn limits_occupants(&self) -> bool;
}

impl XmppServer for super::prosody::TestProsody {
    fn name(&self) -> &'static str {
        "prosody"
    }
    fn kind(&self) -> ServerKind {
        ServerKind::Prosody
    }
    fn port(&self) -> u16 {
        self.port
    }
    fn domain(&self) -> &str {
        &self.domain
    }
    fn muc_domain(&self) -> &str {
        &self.muc_domain
    }
    fn register(&self, user: &str, password: &str) {
        super::prosody::TestProsody::register(self, user, password)
    }
    fn log_tail(&self, lines: usize) -> String {
        super::prosody::TestProsody::log_tail(self, lines)
    }
    fn stop(&mut self) {
        super::prosody::TestProsody::stop(self)
    }
    fn start_again(&mut self) {
        super::prosody::TestProsody::start_again(self)
    }
    fn limits_occupants(&self) -> bool {
        false
    }
}

impl XmppServer for super::ejabberd::TestEjabberd {
    fn name(&self) -> &'static str {
        "ejabberd"
    }
    fn kind(&self) -> ServerKind {
        ServerKind::Ejabberd
    }
    fn port(&self) -> u16 {
        self.port
    }
    fn domain(&self) -> &str {
        &self.domain
    }
    fn muc_domain(&self) -> &str {
        &self.muc_domain
    }
    fn register(&self, user: &str, password: &str) {
        super::ejabberd::TestEjabberd::register(self, user, password)
    }
    fn log_tail(&self, lines: usize) -> String {
        super::ejabberd::TestEjabberd::log_tail(self, lines)
    }
    fn stop(&mut self) {
        super::ejabberd::TestEjabberd::stop(self)
    }
    fn start_again(&mut self) {
        super::ejabberd::TestEjabberd::start_again(self)
    }
    fn limits_occupants(&self) -> bool {
        true
    }
}

// ---------- Helpers for server harnesses ----------

/// A loopback port that is free now, chosen at random BELOW the kernel's ephemeral range,
/// so that outgoing connections (test clients, the bot) can never be given it — which
/// matters for `start_again()`, which must bind the same port after a stop. Falls back to a
/// port chosen by the kernel if the ephemeral range starts too low.
pub fn pick_port() -> u16 {
    let ephemeral_low = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    const LOW: u16 = 10000;
    let mut rng = rand::rng();
    for _ in 0..50 {
        let port = if ephemeral_low > LOW + 1000 {
            rng.random_range(LOW..ephemeral_low)
        } else {
            0
        };
        if let Ok(listener) = TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
            // Released here: the server binds it next.
            return listener.local_addr().expect("local_addr").port();
        }
    }
    panic!("no free loopback port found");
}

/// `name` in `$PATH`, `/usr/bin` or `/usr/sbin` (root's tools are not on every PATH).
pub fn find_executable(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin".into(), "/usr/sbin".into()])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Runs a command with a deadline; returns its status (None on timeout, after killing it)
/// and its combined output. Panics with `not_found` if the program does not exist.
pub fn run_with_deadline(
    mut cmd: Command,
    deadline: Duration,
    not_found: &str,
) -> (Option<ExitStatus>, String) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let program = cmd.get_program().to_owned();
    let child = cmd.spawn().unwrap_or_else(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            panic!("{not_found}");
        }
        panic!("cannot run {}: {e}", Path::new(&program).display())
    });
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(deadline) {
        Ok(Ok(output)) => {
            let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&output.stderr));
            (Some(output.status), text)
        }
        Ok(Err(e)) => panic!("waiting for {}: {e}", Path::new(&program).display()),
        Err(_) => {
            signal_pid(pid, libc::SIGKILL);
            (None, String::new())
        }
    }
}

/// Sends `sig` to a process of ours (a child not yet reaped, or a server's pid read from its
/// own pid file while it runs).
pub fn signal_pid(pid: u32, sig: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Whether a process with this pid exists.
pub fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill(2) with signal 0 only checks for existence.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// The file's content from `offset` on (empty if it does not exist).
pub fn read_from(path: &Path, offset: u64) -> String {
    let Ok(mut file) = fs::File::open(path) else {
        return String::new();
    };
    let mut buf = Vec::new();
    if file.seek(SeekFrom::Start(offset)).is_ok() {
        let _ = file.read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// The last `lines` lines of a file.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = read_from(path, 0);
    let all: Vec<&str> = text.lines().collect();
    let mut out = all[all.len().saturating_sub(lines)..].join("\n");
    out.push('\n');
    out
}
