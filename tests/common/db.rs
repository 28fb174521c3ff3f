//! A fresh, empty database per test on each supported backend, dropped afterwards.
//!
//! Tests run in parallel threads and several test binaries run at once, so every [`TestDb`]
//! gets its own randomly named database (or SQLite file). The servers are never optional: an
//! unreachable PostgreSQL or MariaDB fails the test with the command that starts it.

use std::future::Future;
use std::time::Duration;

use helpim_bot::store::Store;
use sea_orm::{ConnectOptions, ConnectionTrait, Database};

/// The database backends helpim-bot supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in a temporary directory.
    SqliteFile,
    /// An in-memory SQLite database (one per connection, hence one per [`TestDb::store`]).
    SqliteMemory,
    /// A database created on the PostgreSQL server of `HELPIM_TEST_POSTGRES_URL`.
    Postgres,
    /// A database created on the MariaDB/MySQL server of `HELPIM_TEST_MYSQL_URL`.
    MariaDb,
}

/// A database that exists for one test.
pub struct TestDb {
    /// The URL to give to [`Store::connect`].
    pub url: String,
    /// Which backend it is on.
    pub backend: Backend,
    /// For server backends: how to drop the database again.
    server: Option<Server>,
    /// For a SQLite file: the directory holding it, removed on drop.
    _dir: Option<tempfile::TempDir>,
}

/// A database server and the test database created on it.
struct Server {
    admin_url: String,
    name: String,
    drop_sql: String,
}

impl TestDb {
    /// Creates a fresh, empty database on `backend`.
    ///
    /// Panics, with the command that fixes it, when the server is unreachable.
    pub fn new(backend: Backend) -> TestDb {
        TestDb::created_with(backend, "")
    }

    /// A fresh MariaDB database created with the character set `latin1`: the upstream
    /// default before 11.6, and what many old installations have.
    pub fn mariadb_latin1() -> TestDb {
        TestDb::created_with(
            Backend::MariaDb,
            " CHARACTER SET latin1 COLLATE latin1_swedish_ci",
        )
    }

    /// [`TestDb::new`], with `options` after `CREATE DATABASE <name>` on a server backend.
    fn created_with(backend: Backend, options: &str) -> TestDb {
        let (admin_env, admin_default) = match backend {
            Backend::SqliteMemory => {
                return TestDb {
                    url: "sqlite::memory:".to_owned(),
                    backend,
                    server: None,
                    _dir: None,
                };
            }
            Backend::SqliteFile => {
                let dir = tempfile::tempdir().expect("create a temporary directory");
                return TestDb {
                    url: format!(
                        "sqlite://{}?mode=rwc",
                        dir.path().join("helpim.db").display()
                    ),
                    backend,
                    server: None,
                    _dir: Some(dir),
                };
            }
            Backend::Postgres => (
                "HELPIM_TEST_POSTGRES_URL",
                "postgres://postgres@127.0.0.1:5432/postgres",
            ),
            Backend::MariaDb => ("HELPIM_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306"),
        };
        let admin_url = std::env::var(admin_env).unwrap_or_else(|_| admin_default.to_owned());
        let name = format!("helpim_test_{:016x}", rand::random::<u64>());
        let drop_sql = match backend {
            // FORCE: the store's pooled connections may still be closing.
            Backend::Postgres => format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            _ => format!("DROP DATABASE IF EXISTS {name}"),
        };
        let url = database_url(&admin_url, &name);
        let server = Server {
            admin_url,
            name,
            drop_sql,
        };
        let create = format!("CREATE DATABASE {}{options}", server.name);
        if let Err(err) = on_own_runtime(admin(&server.admin_url, &create)) {
            panic!("{}", unreachable_message(backend, &server.admin_url, &err));
        }
        TestDb {
            url,
            backend,
            server: Some(server),
            _dir: None,
        }
    }

    /// Connects a store to this database and migrates it up.
    pub async fn store(&self) -> Store {
        let store = Store::connect(&self.url)
            .await
            .unwrap_or_else(|err| panic!("{}", chain(&err)));
        store.migrate().await.unwrap_or_else(|err| {
            panic!(
                "migrate the {:?} test database: {}",
                self.backend,
                chain(&err)
            )
        });
        store
    }
}

impl Drop for TestDb {
    /// Drops the server database, best effort: a leftover `helpim_test_*` database is
    /// harmless, so a failure is only reported.
    fn drop(&mut self) {
        if let Some(server) = &self.server
            && let Err(err) = on_own_runtime(admin(&server.admin_url, &server.drop_sql))
        {
            eprintln!(
                "warning: could not drop test database {}: {err}",
                server.name
            );
        }
    }
}

/// Runs `future` to completion on a new runtime in its own thread, so that it works both
/// from synchronous code (`Drop`) and from inside a test's runtime.
fn on_own_runtime<F>(future: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("build a tokio runtime")
                    .block_on(future)
            })
            .join()
            .expect("the database admin thread panicked")
    })
}

/// Runs one administrative statement (`CREATE`/`DROP DATABASE`) on the server at `admin_url`.
async fn admin(admin_url: &str, sql: &str) -> Result<(), String> {
    let mut options = ConnectOptions::new(admin_url);
    options
        .sqlx_logging(false)
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5));
    let db = Database::connect(options).await.map_err(|e| chain(&e))?;
    let result = db.execute_unprepared(sql).await.map_err(|e| chain(&e));
    let _ = db.close().await;
    result.map(drop)
}

/// What to tell the developer when the server at `admin_url` cannot be used.
fn unreachable_message(backend: Backend, admin_url: &str, err: &str) -> String {
    let host = host_of(admin_url);
    match backend {
        Backend::Postgres => format!(
            "PostgreSQL at {host} is not reachable or refused CREATE DATABASE ({err}): start it \
             with `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`, \
             or point HELPIM_TEST_POSTGRES_URL at a server where the user may create databases"
        ),
        _ => format!(
            "MariaDB at {host} is not reachable or refused CREATE DATABASE ({err}): start it \
             with `start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd`, \
             or point HELPIM_TEST_MYSQL_URL at a server where the user may create databases"
        ),
    }
}

/// `host:port` of a server URL, without credentials.
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
}

/// `admin_url` with its database (path) replaced by `name`, keeping any query parameters.
fn database_url(admin_url: &str, name: &str) -> String {
    let (base, query) = admin_url
        .split_once('?')
        .map_or((admin_url, None), |(base, query)| (base, Some(query)));
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let server = base[authority_start..]
        .find('/')
        .map_or(base, |i| &base[..authority_start + i]);
    match query {
        Some(query) => format!("{server}/{name}?{query}"),
        None => format!("{server}/{name}"),
    }
}

/// An error and all its causes on one line.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        // Some errors (SeaORM's among them) already repeat their cause in their message.
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Records `bot_jid` as a live bot (lease row with its XMPP session up and a fresh
/// heartbeat), as a running bot does: the claim statements take only such bots' rooms.
/// For tests that write rooms through the store without running a bot.
#[allow(dead_code)] // not every test binary seeds rooms by hand
pub async fn live_bot(store: &Store, bot_jid: &str) {
    use entity::bot_instance;
    use sea_orm::{ActiveValue::Set, EntityTrait};
    let now = helpim_bot::store::now();
    bot_instance::Entity::insert(bot_instance::ActiveModel {
        bot_jid: Set(bot_jid.to_owned()),
        holder: Set("test".into()),
        pid: Set(0),
        host: Set("test".into()),
        acquired_at: Set(now),
        heartbeat_at: Set(now),
        renewals: Set(0),
        process_scope: Set(None),
        process_start: Set(None),
        xmpp_resource: Set(None),
        xmpp_up: Set(true),
    })
    .exec_without_returning(store.connection())
    .await
    .expect("record a live bot");
}
