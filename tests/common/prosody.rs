//! A real Prosody server on loopback, one per test, configured from the repo's template
//! `config/prosody/prosody.cfg.lua.in`.
//!
//! Every instance has its own temporary directory (config, data, pid, logs) and its own
//! port, so tests in several threads and several test binaries can each run one at once.
//!
//! The methods are synchronous (they block for milliseconds: Prosody starts in about
//! 100 ms, `prosodyctl register` takes about 40 ms). Calling them from a `#[tokio::test]`
//! briefly stalls that runtime, which is harmless: nothing here waits on a client task.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rand::RngExt;

/// Template shipped in the repository; also used by the developer script.
const TEMPLATE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/config/prosody/prosody.cfg.lua.in"
);

const NOT_INSTALLED: &str = "Prosody is not installed: run `apt-get install -y prosody`";

/// How long Prosody may take to listen on its port.
const START_DEADLINE: Duration = Duration::from_secs(10);
/// How long Prosody may take to exit after SIGTERM before it gets SIGKILL.
const STOP_DEADLINE: Duration = Duration::from_secs(10);
/// How long `prosodyctl` may take.
const PROSODYCTL_DEADLINE: Duration = Duration::from_secs(20);
/// Attempts at finding a port Prosody can bind (another process may take a free port
/// between our check and Prosody's bind).
const PORT_ATTEMPTS: usize = 8;

/// Set to `debug` to make Prosody log every stanza to its log file (see `log_tail`).
const LOG_LEVEL_ENV: &str = "HELPIM_TEST_PROSODY_LOG";

/// A running (or stopped) Prosody owned by one test. Dropping it stops the server and
/// deletes its directory.
pub struct TestProsody {
    /// c2s port on 127.0.0.1 (plaintext); stays the same across `start_again`.
    pub port: u16,
    /// The user host: `"localhost"`.
    pub domain: String,
    /// The MUC host: `"conference.localhost"`.
    pub muc_domain: String,
    config_file: PathBuf,
    log_file: PathBuf,
    console_file: PathBuf,
    child: Option<Child>,
    // Last field: removed after `Drop::drop` has stopped the process.
    dir: tempfile::TempDir,
}

/// Outcome of waiting for a freshly spawned Prosody.
enum Startup {
    Ready,
    /// Prosody runs but could not bind the port (it does not exit in that case).
    PortTaken,
    Exited(ExitStatus),
    TimedOut,
}

impl TestProsody {
    /// Starts a fresh server with an empty data directory on a free loopback port and
    /// waits (at most 10 s) until it accepts connections.
    pub fn start() -> TestProsody {
        let prosody = find_executable("prosody").unwrap_or_else(|| panic!("{NOT_INSTALLED}"));
        let dir = tempfile::Builder::new()
            .prefix("helpim-prosody-")
            .tempdir()
            .expect("cannot create a temporary directory for Prosody");
        let data_dir = dir.path().join("data");
        fs::create_dir(&data_dir).expect("cannot create Prosody's data directory");
        let mut server = TestProsody {
            port: 0,
            domain: "localhost".to_owned(),
            muc_domain: "conference.localhost".to_owned(),
            config_file: dir.path().join("prosody.cfg.lua"),
            log_file: dir.path().join("prosody.log"),
            console_file: dir.path().join("console.log"),
            child: None,
            dir,
        };
        for _ in 0..PORT_ATTEMPTS {
            server.port = pick_port();
            server.write_config(&data_dir);
            match server.spawn_and_wait(&prosody) {
                Startup::Ready => return server,
                Startup::PortTaken => server.kill_now(),
                outcome => server.start_failed(outcome),
            }
        }
        panic!(
            "Prosody could not bind a free port in {PORT_ATTEMPTS} attempts\n{}",
            server.log_tail(30)
        );
    }

    /// Restarts a stopped server on the same port with the same data (accounts and
    /// persistent rooms survive; temporary rooms do not).
    pub fn start_again(&mut self) {
        assert!(
            self.child.is_none(),
            "start_again() called while Prosody is still running: call stop() first"
        );
        let prosody = find_executable("prosody").unwrap_or_else(|| panic!("{NOT_INSTALLED}"));
        // The port is below the ephemeral range (see pick_port), so no outgoing
        // connection can take it meanwhile; still allow for a slow release.
        for _ in 0..PORT_ATTEMPTS {
            match self.spawn_and_wait(&prosody) {
                Startup::Ready => return,
                Startup::PortTaken => {
                    self.kill_now();
                    std::thread::sleep(Duration::from_millis(250));
                }
                outcome => self.start_failed(outcome),
            }
        }
        panic!(
            "Prosody could not bind port {} again after a restart\n{}",
            self.port,
            self.log_tail(30)
        );
    }

    /// Creates an account (`prosodyctl register`); works while the server runs or not.
    pub fn register(&self, user: &str, password: &str) {
        let prosodyctl = find_executable("prosodyctl").unwrap_or_else(|| panic!("{NOT_INSTALLED}"));
        let mut cmd = Command::new(prosodyctl);
        cmd.arg("--config")
            .arg(&self.config_file)
            .args(["register", user, &self.domain, password]);
        let (status, output) = run_with_deadline(cmd, PROSODYCTL_DEADLINE);
        match status {
            Some(status) if status.success() => {}
            Some(status) => panic!(
                "prosodyctl register {user}@{} failed ({status}):\n{output}",
                self.domain
            ),
            None => panic!(
                "prosodyctl register {user}@{} did not finish within {PROSODYCTL_DEADLINE:?}:\n{output}",
                self.domain
            ),
        }
    }

    /// The bare JID of a user on this server: `user@localhost`.
    pub fn jid(&self, user: &str) -> String {
        format!("{user}@{}", self.domain)
    }

    /// Stops the server: SIGTERM (Prosody closes every stream and exits cleanly), then
    /// SIGKILL if it has not exited within 10 s. Does nothing if already stopped.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        signal(&child, libc::SIGTERM);
        let deadline = Instant::now() + STOP_DEADLINE;
        while Instant::now() < deadline {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        eprintln!(
            "TestProsody: Prosody on port {} ignored SIGTERM for {STOP_DEADLINE:?}; killing it",
            self.port
        );
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Whether the Prosody process is running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The last `lines` lines of Prosody's log file, followed by anything it printed on
    /// stdout/stderr (start-up errors such as a broken config appear only there).
    pub fn log_tail(&self, lines: usize) -> String {
        let mut out = format!(
            "--- last {lines} lines of {} ---\n",
            self.log_file.display()
        );
        out.push_str(&tail(&self.log_file, lines));
        let console = tail(&self.console_file, lines);
        if !console.trim().is_empty() {
            out.push_str(&format!(
                "--- Prosody stdout/stderr ({}) ---\n",
                self.console_file.display()
            ));
            out.push_str(&console);
        }
        out
    }

    /// The generated config file (for debugging, or to run `prosodyctl` by hand).
    pub fn config_file(&self) -> &Path {
        &self.config_file
    }

    fn write_config(&self, data_dir: &Path) {
        let template = fs::read_to_string(TEMPLATE)
            .unwrap_or_else(|e| panic!("cannot read the Prosody template {TEMPLATE}: {e}"));
        let log_level = match std::env::var(LOG_LEVEL_ENV).as_deref() {
            Ok("debug") => "debug",
            // Readiness detection reads an info line from the log: never go above info.
            _ => "info",
        };
        let values = [
            ("@PORT@", self.port.to_string()),
            ("@DATA_DIR@", lua_path(data_dir)),
            ("@PID_FILE@", lua_path(&self.dir.path().join("prosody.pid"))),
            ("@LOG_FILE@", lua_path(&self.log_file)),
            ("@LOG_LEVEL@", log_level.to_owned()),
            ("@MUC_DOMAIN@", self.muc_domain.clone()),
            ("@DOMAIN@", self.domain.clone()),
        ];
        let config = substitute(&template, &values);
        fs::write(&self.config_file, config).expect("cannot write the Prosody config");
    }

    /// Spawns Prosody in the foreground and waits until our log shows the c2s listener on
    /// our port and the port accepts a TCP connection.
    fn spawn_and_wait(&mut self, prosody: &Path) -> Startup {
        // Only log lines written after this offset belong to this start.
        let log_offset = fs::metadata(&self.log_file).map(|m| m.len()).unwrap_or(0);
        let console = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.console_file)
            .expect("cannot open Prosody's console log");
        let console2 = console.try_clone().expect("cannot dup the console log");
        // Same process group as the test: a Ctrl-C on `cargo test` reaches Prosody too
        // (SIGINT makes it shut down), so an interrupted run leaves no server behind.
        let child = Command::new(prosody)
            .arg("-F")
            .arg("--config")
            .arg(&self.config_file)
            .stdin(Stdio::null())
            .stdout(console)
            .stderr(console2)
            .spawn()
            .unwrap_or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    panic!("{NOT_INSTALLED}");
                }
                panic!("cannot start {}: {e}", prosody.display())
            });
        self.child = Some(child);

        let deadline = Instant::now() + START_DEADLINE;
        let ready_line = format!("Activated service 'c2s' on [127.0.0.1]:{}", self.port);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Startup::Exited(status);
            }
            let log = read_from(&self.log_file, log_offset);
            if log.contains("Failed to open server port") {
                return Startup::PortTaken;
            }
            if log.contains(&ready_line)
                && TcpStream::connect_timeout(
                    &SocketAddr::from((Ipv4Addr::LOCALHOST, self.port)),
                    Duration::from_secs(1),
                )
                .is_ok()
            {
                return Startup::Ready;
            }
            if Instant::now() >= deadline {
                return Startup::TimedOut;
            }
            std::thread::sleep(Duration::from_millis(15));
        }
    }

    fn start_failed(&mut self, outcome: Startup) -> ! {
        let what = match outcome {
            Startup::Exited(status) => format!("Prosody exited during start-up ({status})"),
            Startup::TimedOut => format!(
                "Prosody did not accept connections on 127.0.0.1:{} within {START_DEADLINE:?}",
                self.port
            ),
            Startup::Ready | Startup::PortTaken => unreachable!(),
        };
        self.kill_now();
        panic!("{what}\n{}", self.log_tail(40));
    }

    fn kill_now(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for TestProsody {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The test failed: show what the server saw before its directory goes away.
            eprintln!(
                "TestProsody on port {} (test panicked):\n{}",
                self.port,
                self.log_tail(40)
            );
        }
        self.stop();
        // `dir` (a TempDir) is deleted when the fields are dropped, after this.
    }
}

/// A port that is free now, chosen at random BELOW the kernel's ephemeral range, so that
/// outgoing connections (test clients, the bot) can never be given it — which matters for
/// `start_again()`, which must bind the same port after a stop. Falls back to a port
/// chosen by the kernel if the ephemeral range starts too low.
fn pick_port() -> u16 {
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
            // Released here: Prosody binds it next (with SO_REUSEADDR).
            return listener.local_addr().expect("local_addr").port();
        }
    }
    panic!("no free loopback port found");
}

fn find_executable(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/bin".into(), "/usr/sbin".into()])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Paths go inside Lua double-quoted strings.
fn lua_path(path: &Path) -> String {
    let s = path
        .to_str()
        .unwrap_or_else(|| panic!("non-UTF-8 path {}", path.display()));
    assert!(
        !s.contains(['"', '\\', '\n']),
        "path unusable in a Lua string: {s}"
    );
    s.to_owned()
}

fn signal(child: &Child, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid out of range");
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is our own child,
    // not yet reaped, so it cannot have been reused.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Runs a command with a deadline; returns its status (None on timeout, after killing it)
/// and its combined output.
fn run_with_deadline(mut cmd: Command, deadline: Duration) -> (Option<ExitStatus>, String) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let program = cmd.get_program().to_owned();
    let child = cmd.spawn().unwrap_or_else(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            panic!("{NOT_INSTALLED}");
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
            // SAFETY: as in `signal`; the waiting thread has not reaped it yet.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
            (None, String::new())
        }
    }
}

/// Replaces the placeholders on every line that is not a comment (the template's header
/// documents the placeholders by name) and checks that none is left.
fn substitute(template: &str, values: &[(&str, String)]) -> String {
    let mut out = String::with_capacity(template.len() + 256);
    for line in template.lines() {
        if line.trim_start().starts_with("--") {
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
                panic!("unknown placeholder @{name}@ in {TEMPLATE}");
            }
            out.push_str(&line);
        }
        out.push('\n');
    }
    out
}

fn read_from(path: &Path, offset: u64) -> String {
    let Ok(mut file) = fs::File::open(path) else {
        return String::new();
    };
    let mut buf = Vec::new();
    if file.seek(SeekFrom::Start(offset)).is_ok() {
        let _ = file.read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

fn tail(path: &Path, lines: usize) -> String {
    let text = read_from(path, 0);
    let all: Vec<&str> = text.lines().collect();
    let mut out = all[all.len().saturating_sub(lines)..].join("\n");
    out.push('\n');
    out
}
