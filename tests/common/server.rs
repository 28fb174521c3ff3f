//! What tests need of an XMPP server, whichever server it is (Prosody or ejabberd).
//!
//! Scenarios take a `&dyn XmppServer` (or start one with [`start`]) so that the same test
//! runs against every server the bot supports.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

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
    /// The account whose kicks the server refuses (`not-allowed`), for tests of kicks that
    /// fail: on ejabberd a MUC service admin, on Prosody a test plugin
    /// (`tests/fixtures/prosody/mod_helpim_test_unkickable.lua`).
    fn unkickable_user(&self) -> &'static str {
        UNKICKABLE_USER
    }
    /// Takes `account`'s affiliation with `room` away (owner → none), as a server
    /// administrator could. ejabberd does it at once (`ejabberdctl set_room_affiliation`)
    /// and returns `None`; on Prosody a test plugin does it
    /// (`tests/fixtures/prosody/mod_helpim_test_forget.lua`) when an occupant sends the
    /// groupchat body returned.
    fn disown(&self, room: &str, account: &str) -> Option<String>;
}

/// See [`XmppServer::unkickable_user`].
pub const UNKICKABLE_USER: &str = "unkickable";

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
    fn disown(&self, _room: &str, account: &str) -> Option<String> {
        Some(format!("helpim-test: disown {account}"))
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
    fn disown(&self, room: &str, account: &str) -> Option<String> {
        let (name, service) = room.split_once('@').expect("a bare room JID");
        let (ok, output) = self.ctl(&["set_room_affiliation", name, service, account, "none"]);
        assert!(
            ok,
            "ejabberdctl set_room_affiliation {room} {account} none: {output}"
        );
        None
    }
}

// ---------- Helpers for server harnesses ----------

/// Attempts at finding ports a server can bind (another process may take a free port
/// between our check and the server's bind).
pub const PORT_ATTEMPTS: usize = 8;

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

/// The log level a harness configures its server with: `debug` (every stanza logged) when
/// the environment variable `env` says `debug`, else `info`.
pub fn log_level(env: &str) -> &'static str {
    match std::env::var(env).as_deref() {
        Ok("debug") => "debug",
        // Readiness detection reads an info line from the log: never go above info.
        _ => "info",
    }
}

/// Reads the `server`'s template file and replaces the placeholders on every line that is
/// not a comment (a line starting with `comment`: comments document the placeholders by
/// name); panics on a placeholder left over.
pub fn substitute(
    template: &str,
    server: &str,
    comment: &str,
    values: &[(&str, String)],
) -> String {
    let text = fs::read_to_string(template)
        .unwrap_or_else(|e| panic!("cannot read the {server} template {template}: {e}"));
    let mut out = String::with_capacity(text.len() + 256);
    for line in text.lines() {
        if line.trim_start().starts_with(comment) {
            out.push_str(line);
        } else {
            let mut line = line.to_owned();
            for (key, value) in values {
                line = line.replace(key, value);
            }
            // Segments enclosed by two '@' that look like a placeholder name.
            let segments: Vec<&str> = line.split('@').collect();
            let enclosed = segments.get(1..segments.len().saturating_sub(1));
            let leftover = enclosed
                .unwrap_or_default()
                .iter()
                .find(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_uppercase() || c == '_'));
            if let Some(name) = leftover {
                panic!("unknown placeholder @{name}@ in {template}");
            }
            out.push_str(&line);
        }
        out.push('\n');
    }
    out
}

/// Waits at most `deadline` for the child to exit, checking every `poll`; whether it did.
pub fn wait_exit(child: &mut Child, deadline: Duration, poll: Duration) -> bool {
    let deadline = Instant::now() + deadline;
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return true,
            Ok(None) => std::thread::sleep(poll),
        }
    }
    false
}

/// What sets one server's process apart, for [`ServerProcess`].
pub struct ProcessSpec {
    /// The harness, for messages: `TestProsody`.
    pub harness: &'static str,
    /// The server, for messages: `Prosody`.
    pub name: &'static str,
    /// What to say when the server's program is missing.
    pub not_installed: &'static str,
    /// The heading of the console's part of the log tail.
    pub console_label: &'static str,
    /// The log line that says the server accepts connections on this c2s port.
    pub ready_line: fn(u16) -> String,
    /// How the server tells that a port it must bind is taken.
    pub port_in_use: PortInUse,
    /// How long the server may take to accept connections.
    pub start_deadline: Duration,
    /// How long the server may take to exit after SIGTERM before it gets SIGKILL.
    pub stop_deadline: Duration,
    /// How often the harness looks whether the server has started or exited.
    pub poll: Duration,
}

/// How a server tells that a port it must bind is taken.
pub enum PortInUse {
    /// It writes this to its log and keeps running (Prosody).
    Logged(&'static str),
    /// It exits with this in its log or on its console (ejabberd: `eaddrinuse`).
    ExitsWith(&'static str),
}

/// Outcome of waiting for a freshly spawned server.
enum Startup {
    Ready,
    /// The server could not bind a port (see [`PortInUse`]).
    PortTaken,
    Exited(ExitStatus),
    TimedOut,
}

/// A test server's process and the files it writes: what every harness does with it
/// (start with retries, wait until ready, stop, kill, show its log), told apart by its
/// [`ProcessSpec`].
pub struct ServerProcess {
    spec: &'static ProcessSpec,
    log_file: PathBuf,
    /// The server's stdout and stderr (start-up failures often appear only there).
    console_file: PathBuf,
    /// The pid file of the server when the child only wraps it (ejabberdctl runs the
    /// Erlang VM): signals for the server go to that pid.
    pid_file: Option<PathBuf>,
    /// The spawned command while the server runs.
    child: Option<Child>,
}

impl ServerProcess {
    pub fn new(
        spec: &'static ProcessSpec,
        log_file: PathBuf,
        console_file: PathBuf,
        pid_file: Option<PathBuf>,
    ) -> ServerProcess {
        ServerProcess {
            spec,
            log_file,
            console_file,
            pid_file,
            child: None,
        }
    }

    /// The server's log file.
    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// Spawns `cmd` (the server in the foreground) and waits until it accepts connections
    /// on `port`. True when it does; false when a port was taken (the server is killed:
    /// pick other ports, or wait, and call again); panics with the log on any other failure.
    pub fn start(&mut self, cmd: &mut Command, port: u16) -> bool {
        match self.spawn_and_wait(cmd, port) {
            Startup::Ready => true,
            Startup::PortTaken => {
                self.kill();
                false
            }
            outcome => self.start_failed(outcome, port),
        }
    }

    /// Starts the stopped server again with `cmd` on the same `port`.
    pub fn start_again(&mut self, mut cmd: Command, port: u16) {
        let name = self.spec.name;
        assert!(
            self.child.is_none(),
            "start_again() called while {name} is still running: call stop() first"
        );
        // The port is below the ephemeral range (see pick_port), so no outgoing
        // connection can take it meanwhile; still allow for a slow release.
        for _ in 0..PORT_ATTEMPTS {
            if self.start(&mut cmd, port) {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!(
            "{name} could not bind port {port} again after a restart\n{}",
            self.log_tail(30)
        );
    }

    /// Whether the server is running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Takes the child out to stop it (so that a panic while stopping leaves nothing to
    /// stop twice): None if there is none or it has exited.
    pub fn take_running(&mut self) -> Option<Child> {
        let mut child = self.child.take()?;
        match child.try_wait() {
            Ok(Some(_)) => None,
            _ => Some(child),
        }
    }

    /// Sends SIGTERM to `pid` (the server), waits for the child to exit and kills both if
    /// it has not within the stop deadline.
    pub fn terminate(&self, mut child: Child, pid: Option<u32>, port: u16) {
        let ProcessSpec {
            harness,
            name,
            stop_deadline,
            poll,
            ..
        } = *self.spec;
        if let Some(pid) = pid {
            signal_pid(pid, libc::SIGTERM);
        }
        if wait_exit(&mut child, stop_deadline, poll) {
            return;
        }
        eprintln!(
            "{harness}: {name} on port {port} ignored SIGTERM for {stop_deadline:?}; killing it"
        );
        if let Some(pid) = pid {
            signal_pid(pid, libc::SIGKILL);
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Kills the server at once (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(pid) = self.server_pid() {
            signal_pid(pid, libc::SIGKILL);
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The pid of the server process itself: from the pid file where a wrapper runs it,
    /// else the child's (for benchmarks reading its CPU time from /proc).
    pub fn pid(&self) -> Option<u32> {
        self.server_pid()
            .or_else(|| self.child.as_ref().map(Child::id))
    }

    /// The pid of the server a wrapper runs, from its pid file, while it runs.
    pub fn server_pid(&self) -> Option<u32> {
        fs::read_to_string(self.pid_file.as_ref()?)
            .ok()?
            .trim()
            .parse()
            .ok()
            .filter(|&pid| pid_alive(pid))
    }

    /// The last `lines` lines of the server's log file, followed by anything it printed on
    /// its console.
    pub fn log_tail(&self, lines: usize) -> String {
        let mut out = format!(
            "--- last {lines} lines of {} ---\n",
            self.log_file.display()
        );
        out.push_str(&tail(&self.log_file, lines));
        let console = tail(&self.console_file, lines);
        if !console.trim().is_empty() {
            out.push_str(&format!(
                "--- {} ({}) ---\n",
                self.spec.console_label,
                self.console_file.display()
            ));
            out.push_str(&console);
        }
        out
    }

    /// When the test has failed, shows what the server saw before its directory goes away.
    pub fn report_panic(&self, port: u16) {
        if std::thread::panicking() {
            eprintln!(
                "{} on port {port} (test panicked):\n{}",
                self.spec.harness,
                self.log_tail(40)
            );
        }
    }

    /// Spawns `cmd` with its output appended to the console file and waits until the log
    /// shows the ready line for `port` and the port accepts a TCP connection.
    fn spawn_and_wait(&mut self, cmd: &mut Command, port: u16) -> Startup {
        let spec = self.spec;
        // Only what is written after these offsets belongs to this start.
        let log_offset = fs::metadata(&self.log_file).map(|m| m.len()).unwrap_or(0);
        let console_offset = fs::metadata(&self.console_file)
            .map(|m| m.len())
            .unwrap_or(0);
        let console = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.console_file)
            .unwrap_or_else(|e| panic!("cannot open {}'s console log: {e:?}", spec.name));
        let console2 = console.try_clone().expect("cannot dup the console log");
        if let Some(pid_file) = &self.pid_file {
            let _ = fs::remove_file(pid_file);
        }
        cmd.stdin(Stdio::null()).stdout(console).stderr(console2);
        let child = cmd.spawn().unwrap_or_else(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                panic!("{}", spec.not_installed);
            }
            panic!(
                "cannot start {}: {e}",
                Path::new(cmd.get_program()).display()
            )
        });
        self.child = Some(child);

        let deadline = Instant::now() + spec.start_deadline;
        let ready_line = (spec.ready_line)(port);
        loop {
            let exited = match self.child.as_mut() {
                Some(child) => child.try_wait().ok().flatten(),
                None => None,
            };
            let log = read_from(&self.log_file, log_offset);
            let port_taken = match spec.port_in_use {
                PortInUse::Logged(line) => exited.is_none() && log.contains(line),
                PortInUse::ExitsWith(word) => {
                    exited.is_some()
                        && (log.contains(word)
                            || read_from(&self.console_file, console_offset).contains(word))
                }
            };
            if let Some(status) = exited {
                self.child = None;
                return if port_taken {
                    Startup::PortTaken
                } else {
                    Startup::Exited(status)
                };
            }
            if port_taken {
                return Startup::PortTaken;
            }
            if log.contains(&ready_line)
                && TcpStream::connect_timeout(
                    &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                    Duration::from_secs(1),
                )
                .is_ok()
            {
                return Startup::Ready;
            }
            if Instant::now() >= deadline {
                return Startup::TimedOut;
            }
            std::thread::sleep(spec.poll);
        }
    }

    fn start_failed(&mut self, outcome: Startup, port: u16) -> ! {
        let ProcessSpec {
            name,
            start_deadline,
            ..
        } = *self.spec;
        let what = match outcome {
            Startup::Exited(status) => format!("{name} exited during start-up ({status})"),
            Startup::TimedOut => format!(
                "{name} did not accept connections on 127.0.0.1:{port} within {start_deadline:?}"
            ),
            Startup::Ready | Startup::PortTaken => unreachable!(),
        };
        self.kill();
        panic!("{what}\n{}", self.log_tail(40));
    }
}
