//! A real ejabberd server on loopback, one per test, configured from the repo's templates
//! `config/ejabberd/ejabberd.yml.in` and `config/ejabberd/ejabberdctl.cfg.in`.
//!
//! Every instance has its own temporary directory (config, Mnesia spool, logs, pid file),
//! its own c2s port, its own Erlang node name and its own Erlang distribution port (no
//! shared epmd), so that tests in several threads can each run one at once. The two nodes
//! of a test cluster ([`super::cluster`]) share one distribution port, each on its own
//! loopback address.
//!
//! How it runs (ejabberd 23.01, Debian 12):
//! - Everything goes through `ejabberdctl --config-dir DIR --spool DIR/db --logs DIR/logs`.
//!   Run as root, ejabberdctl switches to the `ejabberd` user, so the instance directory is
//!   created under `/tmp` and handed to that user.
//! - The server runs as `ejabberdctl … foreground-quiet`, a child of the test: its console
//!   output (start-up failures such as a port in use) is kept in `console.log`, and the
//!   harness notices at once when it exits. (`ejabberdctl start` detaches and answers 0 even
//!   when start-up fails.) Readiness is ejabberd's own log line saying the c2s listener
//!   accepts connections, plus a TCP connection to the port, within a deadline.
//! - It is stopped with `ejabberdctl stop` (a clean shutdown: clients see their streams
//!   closed), falling back to SIGTERM and then SIGKILL of the Erlang VM.
//! - Accounts are created with `ejabberdctl register`. Each ejabberdctl command boots a
//!   small Erlang node: about 0.5 s, so register only the accounts a test uses.
//!
//! The methods are synchronous: start ~1.5 s, stop ~2.5 s, register ~0.5 s. Calling them
//! from a `#[tokio::test]` stalls that runtime meanwhile, which is harmless before clients
//! exist and after they are gone.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;
use std::time::Duration;

use rand::RngExt;

use super::server::{
    PORT_ATTEMPTS, PortInUse, ProcessSpec, ServerProcess, find_executable, log_level, pick_port,
    run_with_deadline, substitute, wait_exit,
};

/// Templates shipped in the repository.
const TEMPLATE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/config/ejabberd/ejabberd.yml.in"
);
const CTL_TEMPLATE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/config/ejabberd/ejabberdctl.cfg.in"
);

const NOT_INSTALLED: &str = "ejabberd is not installed: run `apt-get install -y ejabberd`";

/// The system account ejabberdctl runs the server as.
const EJABBERD_USER: &str = "ejabberd";

/// How long a clean stop may take before SIGTERM, and SIGTERM before SIGKILL.
const STOP_DEADLINE: Duration = Duration::from_secs(15);
/// How long one `ejabberdctl` command may take.
const CTL_DEADLINE: Duration = Duration::from_secs(30);

/// Set to `debug` to make ejabberd log every stanza to its log file (see `log_tail`).
const LOG_LEVEL_ENV: &str = "HELPIM_TEST_EJABBERD_LOG";

/// How ejabberd runs, starts and stops.
static PROCESS: ProcessSpec = ProcessSpec {
    harness: "TestEjabberd",
    name: "ejabberd",
    not_installed: NOT_INSTALLED,
    console_label: "ejabberd console",
    ready_line: |port| {
        format!("Start accepting TCP connections at 127.0.0.1:{port} for ejabberd_c2s")
    },
    // The c2s or the distribution port was taken.
    port_in_use: PortInUse::ExitsWith("eaddrinuse"),
    // About 1.5 s when idle; a loaded two-core CI machine running several tests at once
    // is slower.
    start_deadline: Duration::from_secs(30),
    stop_deadline: STOP_DEADLINE,
    poll: Duration::from_millis(20),
};

/// A running (or stopped) ejabberd owned by one test. Dropping it stops the server and
/// deletes its directory.
pub struct TestEjabberd {
    /// c2s port on 127.0.0.1 (plaintext); stays the same across `start_again`.
    pub port: u16,
    /// The user host: `"localhost"`.
    pub domain: String,
    /// The MUC host: `"conference.localhost"`.
    pub muc_domain: String,
    /// Erlang distribution port (how ejabberdctl reaches the node), on the node's loopback
    /// address: 127.0.0.1, or 127.0.0.2 for the second node of a test cluster.
    dist_port: u16,
    /// Erlang node name, unique per instance (the Mnesia spool is tied to it).
    pub(crate) node: String,
    /// The loopback address Erlang distribution listens on, as an Erlang tuple.
    dist_interface: String,
    ctl: PathBuf,
    pid_file: PathBuf,
    /// `ejabberdctl foreground-quiet` while the server runs, its log and console files, and
    /// the pid file of the Erlang VM it runs.
    process: ServerProcess,
    // Last field: removed after `Drop::drop` has stopped the server.
    dir: tempfile::TempDir,
}

impl TestEjabberd {
    /// Starts a fresh server with an empty spool on free loopback ports and waits (at most
    /// 30 s) until it accepts connections.
    pub fn start() -> TestEjabberd {
        Self::start_node(None)
    }

    /// Starts a fresh server; `cluster` makes it a node of a test cluster: its Erlang
    /// distribution on that loopback address (`[127, 0, 0, 2]`) and that shared port, its
    /// node name a long one on the address (`helpim-…@127.0.0.2`).
    pub(crate) fn start_node(cluster: Option<([u8; 4], u16)>) -> TestEjabberd {
        let ctl = find_executable("ejabberdctl").unwrap_or_else(|| panic!("{NOT_INSTALLED}"));
        let owner = ejabberd_account();
        ensure_erlang_cookie(owner);
        // Under /tmp, not $TMPDIR: every parent directory must be reachable by the
        // `ejabberd` user, and /tmp always is.
        let dir = tempfile::Builder::new()
            .prefix("helpim-ejabberd-")
            .tempdir_in("/tmp")
            .expect("cannot create a temporary directory for ejabberd in /tmp");
        for sub in ["db", "logs"] {
            fs::create_dir(dir.path().join(sub)).expect("cannot create ejabberd's directories");
        }
        let inetrc = fs::read_to_string("/etc/ejabberd/inetrc").unwrap_or_else(|_| {
            // Debian's file: resolve names from /etc/hosts, localhost is 127.0.0.1.
            "{lookup,[\"file\",\"native\"]}.\n{host,{127,0,0,1}, [\"localhost\",\"hostalias\"]}.\n{file, resolv, \"/etc/resolv.conf\"}.\n".to_owned()
        });
        fs::write(dir.path().join("inetrc"), inetrc).expect("cannot write inetrc");
        let n: u64 = rand::rng().random();
        let pid_file = dir.path().join("ejabberd.pid");
        let mut server = TestEjabberd {
            port: 0,
            domain: "localhost".to_owned(),
            muc_domain: "conference.localhost".to_owned(),
            dist_port: 0,
            node: match cluster {
                Some(([a, b, c, d], _)) => format!("helpim-{n:016x}@{a}.{b}.{c}.{d}"),
                None => format!("helpim-{n:016x}@localhost"),
            },
            dist_interface: match cluster {
                Some(([a, b, c, d], _)) => format!("{{{a},{b},{c},{d}}}"),
                None => "{127,0,0,1}".to_owned(),
            },
            ctl,
            process: ServerProcess::new(
                &PROCESS,
                dir.path().join("logs").join("ejabberd.log"),
                dir.path().join("console.log"),
                Some(pid_file.clone()),
            ),
            pid_file,
            dir,
        };
        for _ in 0..PORT_ATTEMPTS {
            server.port = pick_port();
            server.dist_port = match cluster {
                Some((_, shared)) => shared,
                None => loop {
                    let port = pick_port();
                    if port != server.port {
                        break port;
                    }
                },
            };
            server.write_config(owner);
            if server.process.start(&mut server.command(), server.port) {
                return server;
            }
        }
        panic!(
            "ejabberd could not bind free ports in {PORT_ATTEMPTS} attempts\n{}",
            server.log_tail(30)
        );
    }

    /// Restarts a stopped server on the same port with the same spool (accounts and
    /// persistent rooms survive; temporary rooms do not).
    pub fn start_again(&mut self) {
        self.process.start_again(self.command(), self.port);
    }

    /// Creates an account (`ejabberdctl register`), or re-creates it if it exists, so that
    /// afterwards `user` logs in with `password` either way. The server must run.
    pub fn register(&self, user: &str, password: &str) {
        let (ok, output) = self.ctl(&["register", user, &self.domain, password]);
        if ok {
            return;
        }
        if output.contains("already registered") {
            // `change_password` needs mod_admin_extra; unregistering needs nothing.
            let (ok, again) = self.ctl(&["unregister", user, &self.domain]);
            let (ok, again) = if ok {
                self.ctl(&["register", user, &self.domain, password])
            } else {
                (ok, again)
            };
            if ok {
                return;
            }
            panic!(
                "ejabberdctl could not reset the password of {user}@{}:\n{again}",
                self.domain
            );
        }
        panic!(
            "ejabberdctl register {user}@{} failed:\n{output}\n{}",
            self.domain,
            self.log_tail(20)
        );
    }

    /// The bare JID of a user on this server: `user@localhost`.
    pub fn jid(&self, user: &str) -> String {
        format!("{user}@{}", self.domain)
    }

    /// Stops the server cleanly with `ejabberdctl stop` (ejabberd closes every stream and
    /// exits), then SIGTERM and SIGKILL to the Erlang VM if it has not exited within 15 s
    /// each. Does nothing if already stopped.
    pub fn stop(&mut self) {
        let Some(mut child) = self.process.take_running() else {
            return;
        };
        // The Erlang VM's pid, from the pid file ejabberd writes at start-up.
        let beam = self.process.server_pid();
        let (ok, output) = self.ctl(&["stop"]);
        if ok && wait_exit(&mut child, STOP_DEADLINE, PROCESS.poll) {
            return;
        }
        eprintln!(
            "TestEjabberd: `ejabberdctl stop` of the server on port {} did not stop it ({}); sending SIGTERM",
            self.port,
            output.trim()
        );
        self.process.terminate(child, beam, self.port);
    }

    /// Kills the server's Erlang VM at once (SIGKILL), as a crashed node: no stream is
    /// closed, nothing is saved.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Whether the server is running.
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// The server process's pid while it runs (benchmarks read its CPU time).
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// The last `lines` lines of ejabberd's log file, followed by anything it printed on
    /// its console (start-up failures such as a port in use appear there).
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    /// The instance directory (config, `db/` spool, `logs/`), e.g. to run `ejabberdctl
    /// --config-dir DIR --spool DIR/db --logs DIR/logs …` by hand.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `ejabberdctl` with this instance's directories; returns whether it succeeded
    /// and its output. Panics if it does not finish within 30 s.
    pub fn ctl(&self, args: &[&str]) -> (bool, String) {
        let mut cmd = self.ctl_command();
        cmd.args(args);
        let (status, output) = run_with_deadline(cmd, CTL_DEADLINE, NOT_INSTALLED);
        match status {
            Some(status) => (status.success(), output),
            None => panic!(
                "ejabberdctl {} did not finish within {CTL_DEADLINE:?}\n{}",
                args.join(" "),
                self.log_tail(20)
            ),
        }
    }

    fn ctl_command(&self) -> Command {
        let dir = self.dir.path();
        let mut cmd = Command::new(&self.ctl);
        cmd.arg("--config-dir")
            .arg(dir)
            .arg("--spool")
            .arg(dir.join("db"))
            .arg("--logs")
            .arg(dir.join("logs"))
            // ejabberdctl changes into the spool directory itself; start from somewhere
            // the `ejabberd` user may be.
            .current_dir("/");
        cmd
    }

    fn write_config(&self, owner: Option<(u32, u32)>) {
        let config = substitute(
            TEMPLATE,
            "ejabberd",
            "#",
            &[
                ("@PORT@", self.port.to_string()),
                ("@LOG_LEVEL@", log_level(LOG_LEVEL_ENV).to_owned()),
                ("@MUC_DOMAIN@", self.muc_domain.clone()),
                ("@DOMAIN@", self.domain.clone()),
            ],
        );
        // The account whose kicks are refused (see `XmppServer::unkickable_user`): a MUC
        // service admin, whom ejabberd lets nobody kick.
        let unkickable = format!(
            "acl:\n  unkickable:\n    user: \"{}@{}\"\n",
            super::server::UNKICKABLE_USER,
            self.domain
        );
        let admin = "    access_admin:\n      - deny\n";
        assert!(
            config.contains(admin) && config.contains("\nacl:\n"),
            "template changed"
        );
        let config = config
            .replacen("\nacl:\n", &format!("\n{unkickable}"), 1)
            .replacen(admin, "    access_admin:\n      - allow: unkickable\n", 1);
        fs::write(self.dir.path().join("ejabberd.yml"), config).expect("cannot write ejabberd.yml");
        let ctl_config = substitute(
            CTL_TEMPLATE,
            "ejabberd",
            "#",
            &[
                ("@ERLANG_NODE@", shell_value(&self.node)),
                ("@ERL_DIST_PORT@", self.dist_port.to_string()),
                ("@DIST_INTERFACE@", self.dist_interface.clone()),
                ("@PID_FILE@", shell_value(path_str(&self.pid_file))),
            ],
        );
        fs::write(self.dir.path().join("ejabberdctl.cfg"), ctl_config)
            .expect("cannot write ejabberdctl.cfg");
        if let Some((uid, gid)) = owner {
            chown_tree(self.dir.path(), uid, gid);
        }
    }

    /// `ejabberdctl foreground-quiet`: the server as a child of the test.
    fn command(&self) -> Command {
        let mut cmd = self.ctl_command();
        cmd.arg("foreground-quiet");
        cmd
    }
}

impl Drop for TestEjabberd {
    fn drop(&mut self) {
        self.process.report_panic(self.port);
        self.stop();
        // `dir` (a TempDir) is deleted when the fields are dropped, after this.
    }
}

/// The `ejabberd` system account: uid, gid, home directory.
fn ejabberd_passwd() -> Option<(u32, u32, PathBuf)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.first() != Some(&EJABBERD_USER) || fields.len() < 6 {
            return None;
        }
        Some((
            fields[2].parse().ok()?,
            fields[3].parse().ok()?,
            PathBuf::from(fields[5]),
        ))
    })
}

/// The uid and gid of the `ejabberd` account when the files must be handed to it (the
/// tests run as root: ejabberdctl then runs the server as `ejabberd`); None when the tests
/// already run as that user. Panics for any other user: ejabberdctl refuses them.
fn ejabberd_account() -> Option<(u32, u32)> {
    let Some((uid, gid, _)) = ejabberd_passwd() else {
        panic!("{NOT_INSTALLED} (there is no `{EJABBERD_USER}` system user)");
    };
    // SAFETY: geteuid has no preconditions.
    match unsafe { libc::geteuid() } {
        0 => Some((uid, gid)),
        euid if euid == uid => None,
        _ => panic!(
            "ejabberdctl runs only as root or as the `{EJABBERD_USER}` user: run the tests as one of them"
        ),
    }
}

/// Erlang creates `~ejabberd/.erlang.cookie` on the first start of any node if it is
/// missing; two instances starting at once on a fresh machine would race to create it (one
/// fails, or both run with different cookies and ejabberdctl cannot reach one of them). So
/// the harness creates it once, before the first start, as Erlang would: 20 capital
/// letters, readable only by its owner.
fn ensure_erlang_cookie(owner: Option<(u32, u32)>) {
    static COOKIE: Once = Once::new();
    COOKIE.call_once(|| {
        let Some((_, _, home)) = ejabberd_passwd() else {
            return;
        };
        let cookie = home.join(".erlang.cookie");
        if cookie.exists() || !home.is_dir() {
            return;
        }
        let mut rng = rand::rng();
        let value: String = (0..20)
            .map(|_| char::from(b'A' + rng.random_range(0..26u8)))
            .collect();
        let tmp = home.join(format!(".erlang.cookie.helpim-{}", std::process::id()));
        if fs::write(&tmp, value).is_err() {
            return;
        }
        if let Some((uid, gid)) = owner {
            let _ = std::os::unix::fs::chown(&tmp, Some(uid), Some(gid));
        }
        let _ = fs::set_permissions(&tmp, fs::Permissions::from_mode(0o400));
        // Atomic: no node ever reads a half-written cookie.
        let _ = fs::rename(&tmp, &cookie);
    });
}

fn chown_tree(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("cannot hand {} to the ejabberd user: {e}", path.display()));
    if path.is_dir() {
        for entry in fs::read_dir(path).expect("read the instance directory") {
            chown_tree(&entry.expect("directory entry").path(), uid, gid);
        }
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str()
        .unwrap_or_else(|| panic!("non-UTF-8 path {}", path.display()))
}

/// Values go inside shell double quotes in ejabberdctl.cfg.
fn shell_value(value: &str) -> String {
    assert!(
        !value.contains(['"', '$', '\\', '`', '\n']),
        "value unusable in ejabberdctl.cfg: {value}"
    );
    value.to_owned()
}
