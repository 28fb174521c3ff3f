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
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::server::{
    PORT_ATTEMPTS, PortInUse, ProcessSpec, ServerProcess, find_executable, log_level, pick_port,
    run_with_deadline, substitute,
};

/// Template shipped in the repository; also used by the developer script.
const TEMPLATE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/config/prosody/prosody.cfg.lua.in"
);

/// Debian's stock configuration, made runnable on loopback ([`TestProsody::start_stock`]).
const STOCK_TEMPLATE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/config/prosody/prosody-stock.cfg.lua.in"
);

const NOT_INSTALLED: &str = "Prosody is not installed: run `apt-get install -y prosody`";

/// How long `prosodyctl` may take.
const PROSODYCTL_DEADLINE: Duration = Duration::from_secs(20);

/// Set to `debug` to make Prosody log every stanza to its log file (see `log_tail`).
const LOG_LEVEL_ENV: &str = "HELPIM_TEST_PROSODY_LOG";

/// How Prosody runs, starts and stops.
static PROCESS: ProcessSpec = ProcessSpec {
    harness: "TestProsody",
    name: "Prosody",
    not_installed: NOT_INSTALLED,
    console_label: "Prosody stdout/stderr",
    ready_line: |port| format!("Activated service 'c2s' on [127.0.0.1]:{port}"),
    // Prosody does not exit when it cannot bind its port.
    port_in_use: PortInUse::Logged("Failed to open server port"),
    // Prosody starts in about 100 ms.
    start_deadline: Duration::from_secs(10),
    stop_deadline: Duration::from_secs(10),
    poll: Duration::from_millis(15),
};

/// A running (or stopped) Prosody owned by one test. Dropping it stops the server and
/// deletes its directory.
pub struct TestProsody {
    /// c2s port on 127.0.0.1 (plaintext); stays the same across `start_again`.
    pub port: u16,
    /// The user host: `"localhost"`.
    pub domain: String,
    /// The MUC host: `"conference.localhost"`.
    pub muc_domain: String,
    /// The `prosody` executable.
    prosody: PathBuf,
    config_file: PathBuf,
    /// `prosody -F` while the server runs, its log and console files.
    process: ServerProcess,
    /// With TLS: the test CA that signed the server's certificate (STARTTLS required).
    ca_file: Option<PathBuf>,
    // Last field: removed after `Drop::drop` has stopped the process.
    dir: tempfile::TempDir,
}

impl TestProsody {
    /// Starts a fresh server with an empty data directory on a free loopback port and
    /// waits (at most 10 s) until it accepts connections.
    pub fn start() -> TestProsody {
        Self::start_inner(false)
    }

    /// Like [`start`](Self::start), but with STARTTLS required on c2s, using a certificate
    /// for `localhost` signed by a throwaway test CA ([`ca_file`](Self::ca_file)); a client
    /// trusts it with `SSL_CERT_FILE=<ca_file>`.
    pub fn start_with_tls() -> TestProsody {
        Self::start_inner(true)
    }

    /// The test CA's certificate, when the server runs with TLS.
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }

    fn start_inner(tls: bool) -> TestProsody {
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
            prosody,
            config_file: dir.path().join("prosody.cfg.lua"),
            process: ServerProcess::new(
                &PROCESS,
                dir.path().join("prosody.log"),
                dir.path().join("console.log"),
                None,
            ),
            ca_file: None,
            dir,
        };
        if tls {
            server.ca_file = Some(make_certificates(&data_dir, &server.domain));
        }
        for _ in 0..PORT_ATTEMPTS {
            server.port = pick_port();
            server.write_config(&data_dir);
            if server.process.start(&mut server.command(), server.port) {
                return server;
            }
        }
        panic!(
            "Prosody could not bind a free port in {PORT_ATTEMPTS} attempts\n{}",
            server.log_tail(30)
        );
    }

    /// Starts a server configured as Debian ships Prosody
    /// (`config/prosody/prosody-stock.cfg.lua.in`: `limits` with c2s at 10 kB/s, `smacks`
    /// with 600 s of hibernation, a room cache of 100), with `unlimited` (bare JIDs) exempt
    /// from the limits.
    pub fn start_stock(unlimited: &[&str]) -> TestProsody {
        let mut server = Self::start();
        server.stop();
        let data_dir = server.dir.path().join("data");
        let values = [
            ("@PORT@", server.port.to_string()),
            ("@DATA_DIR@", lua_path(&data_dir)),
            (
                "@PID_FILE@",
                lua_path(&server.dir.path().join("prosody.pid")),
            ),
            ("@LOG_FILE@", lua_path(server.process.log_file())),
            ("@LOG_LEVEL@", log_level(LOG_LEVEL_ENV).to_owned()),
            ("@MUC_DOMAIN@", server.muc_domain.clone()),
            ("@DOMAIN@", server.domain.clone()),
            (
                "@UNLIMITED_JIDS@",
                unlimited
                    .iter()
                    .map(|jid| format!("{jid:?}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
        ];
        let config = substitute(STOCK_TEMPLATE, "Prosody", "--", &values);
        fs::write(&server.config_file, config).expect("cannot write the Prosody config");
        server.start_again();
        server
    }

    /// Restarts a stopped server on the same port with the same data (accounts and
    /// persistent rooms survive; temporary rooms do not).
    pub fn start_again(&mut self) {
        self.process.start_again(self.command(), self.port);
    }

    /// Creates an account (`prosodyctl register`); works while the server runs or not.
    pub fn register(&self, user: &str, password: &str) {
        let prosodyctl = find_executable("prosodyctl").unwrap_or_else(|| panic!("{NOT_INSTALLED}"));
        let mut cmd = Command::new(prosodyctl);
        cmd.arg("--config")
            .arg(&self.config_file)
            .args(["register", user, &self.domain, password]);
        let (status, output) = run_with_deadline(cmd, PROSODYCTL_DEADLINE, NOT_INSTALLED);
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
        if let Some(child) = self.process.take_running() {
            let pid = child.id();
            self.process.terminate(child, Some(pid), self.port);
        }
    }

    /// Whether the Prosody process is running.
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// The server process's pid while it runs (benchmarks read its CPU time).
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// The last `lines` lines of Prosody's log file, followed by anything it printed on
    /// stdout/stderr (start-up errors such as a broken config appear only there).
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    /// The generated config file (for debugging, or to run `prosodyctl` by hand).
    pub fn config_file(&self) -> &Path {
        &self.config_file
    }

    fn write_config(&self, data_dir: &Path) {
        let values = [
            ("@PORT@", self.port.to_string()),
            ("@DATA_DIR@", lua_path(data_dir)),
            ("@PID_FILE@", lua_path(&self.dir.path().join("prosody.pid"))),
            ("@LOG_FILE@", lua_path(self.process.log_file())),
            ("@LOG_LEVEL@", log_level(LOG_LEVEL_ENV).to_owned()),
            ("@MUC_DOMAIN@", self.muc_domain.clone()),
            ("@DOMAIN@", self.domain.clone()),
        ];
        let mut config = substitute(TEMPLATE, "Prosody", "--", &values);
        if self.ca_file.is_some() {
            // TLS on: load the tls module (its certificate is found in the certificates
            // directory, the data dir) and refuse plaintext logins.
            // (Removed from modules_disabled, and listed: it is not loaded by default.)
            config = config
                .replacen("\t\"tls\";\n", "", 1)
                .replacen("\t\"saslauth\";", "\t\"tls\";\n\t\"saslauth\";", 1)
                .replace(
                    "c2s_require_encryption = false",
                    "c2s_require_encryption = true",
                );
        }
        // The test plugins (a kick-refusing one, see `XmppServer::unkickable_user`, and one
        // that makes a room forget an occupant silently, see `tests/self_ping.rs`): their directory
        // in the global section, and the module on the MUC component, which is the last
        // section of the template.
        let plugins = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/prosody");
        config = format!(
            "plugin_paths = {{ \"{plugins}\" }}\n{config}\n\tmodules_enabled = {{ \"helpim_test_unkickable\", \"helpim_test_forget\" }}\n"
        );
        fs::write(&self.config_file, config).expect("cannot write the Prosody config");
    }

    /// Prosody in the foreground with our config. Same process group as the test: a
    /// Ctrl-C on `cargo test` reaches Prosody too (SIGINT makes it shut down), so an
    /// interrupted run leaves no server behind.
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.prosody);
        cmd.arg("-F").arg("--config").arg(&self.config_file);
        cmd
    }
}

impl Drop for TestProsody {
    fn drop(&mut self) {
        self.process.report_panic(self.port);
        self.stop();
        // `dir` (a TempDir) is deleted when the fields are dropped, after this.
    }
}

/// A throwaway CA and a certificate for `domain` signed by it, written where Prosody looks
/// for them (`<dir>/<domain>.crt` and `.key`); returns the CA certificate's path.
fn make_certificates(dir: &Path, domain: &str) -> PathBuf {
    let run = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl is needed for TLS tests: apt-get install -y openssl");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let subject = format!("/CN={domain}");
    fs::write(
        dir.join("leaf.ext"),
        format!("subjectAltName=DNS:{domain}\nextendedKeyUsage=serverAuth\n"),
    )
    .expect("write the certificate extensions");
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=helpim-test-ca",
    ]);
    let key = format!("{domain}.key");
    let crt = format!("{domain}.crt");
    run(&[
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", "leaf.csr", "-subj",
        &subject,
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        &crt,
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
    ]);
    dir.join("ca.crt")
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
