//! The `helpim-bot` binary as an operator meets it: config checking, the first connection,
//! clean exits on signals, clear errors with a non-zero exit, and the look-up commands.
//!
//! Needs Prosody (`apt-get install -y prosody`).

mod common;

use sea_orm::EntityTrait;

use std::process::Command;
use std::time::{Duration, Instant};

use common::bot::{BotOptions, TestBot, helpim_bot, stderr, wait_available};
use common::client::TestClient;
use common::db::{Backend, TestDb};
use common::prosody::TestProsody;

/// A config for `server` (or a dead port), with this password.
fn write_config(
    dir: &std::path::Path,
    port: u16,
    password: &str,
    extra: &str,
) -> std::path::PathBuf {
    let path = dir.join("bot.toml");
    std::fs::write(
        &path,
        format!(
            "[xmpp]\njid = \"helpim-bot@localhost\"\npassword = \"{password}\"\nhost = \"127.0.0.1\"\n\
             port = {port}\ntls = \"none\"\n[muc]\nservice = \"conference.localhost\"\n\
             [database]\nurl = \"sqlite://{}/bot.sqlite\"\n\
             [http]\nlisten = \"127.0.0.1:{http}\"\n{extra}\n",
            dir.display(),
            // The listener is on by default; tests run in parallel: a port of its own.
            http = common::server::pick_port(),
        ),
    )
    .unwrap();
    path
}

#[test]
fn check_config_accepts_the_example_with_a_password_from_the_environment() {
    let output = Command::new(env!("CARGO_BIN_EXE_helpim-bot"))
        .args(["check-config", "--config", "config/helpim-bot.example.toml"])
        .env("HELPIM_XMPP_PASSWORD", "secret")
        .env("HELPIM_DATABASE_URL", "sqlite::memory:")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("valid"), "{stdout}");
    assert!(
        !stdout.contains("secret"),
        "the summary must not show the password: {stdout}"
    );
}

#[test]
fn a_bad_config_exits_2_with_one_line_naming_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        5222,
        "pw",
        "[pool]\navailable = 5\nmax_rooms = 3",
    );
    let output = helpim_bot(&["check-config", "--config", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(err.contains(path.to_str().unwrap()), "{err}");
    assert!(err.contains("pool.max_rooms"), "{err}");
    assert_eq!(err.lines().count(), 1, "one clear line: {err}");

    let output = helpim_bot(&["--config", "/nonexistent/helpim.toml"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("/nonexistent/helpim.toml"));
}

#[test]
fn bad_command_line_arguments_exit_2() {
    let output = helpim_bot(&["rooms", "--status", "chatty"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("chatty"), "{}", stderr(&output));
}

#[tokio::test]
async fn a_wrong_password_fails_fast_with_a_clear_error() {
    let server = TestProsody::start();
    server.register("helpim-bot", "right");
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        server.port,
        "wrong",
        "[timeouts]\nconnect_secs = 20",
    );
    let started = Instant::now();
    let output = helpim_bot(&["--config", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    let err = stderr(&output);
    assert!(
        err.contains("login as helpim-bot@localhost failed"),
        "{err}"
    );
    assert!(err.contains("xmpp.password"), "{err}");
}

#[test]
fn an_unreachable_server_fails_within_connect_secs() {
    // A port nobody listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), port, "pw", "[timeouts]\nconnect_secs = 2");
    let started = Instant::now();
    let output = helpim_bot(&["--config", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(8),
        "took {elapsed:?}"
    );
    let err = stderr(&output);
    assert!(
        err.contains(&format!("could not reach the XMPP server 127.0.0.1:{port}")),
        "{err}"
    );
}

#[tokio::test]
async fn the_bot_comes_online_answers_disco_and_exits_0_on_sigterm_and_sigint() {
    let server = TestProsody::start();
    let db = TestDb::new(Backend::SqliteFile);
    let store = db.store().await;
    let mut bot = TestBot::start(
        &server,
        &db.url,
        BotOptions {
            available: 1,
            ..Default::default()
        },
    );
    wait_available(&store, &bot.jid, 1).await;

    // The bot is online and answers service discovery as a bot, and pings.
    server.register("probe", "pw");
    let mut probe = TestClient::connect(&server, "probe", "pw").await;
    // Each process binds a resource of its own, recorded in its lease row.
    let lease = entity::bot_instance::Entity::find_by_id(bot.jid.clone())
        .one(store.connection())
        .await
        .expect("read the lease")
        .expect("the bot holds a lease");
    let resource = lease
        .xmpp_resource
        .expect("the lease names the bot's resource");
    assert!(resource.starts_with("helpim-bot."), "{resource}");
    let info = probe
        .disco_info(&format!("{}/{resource}", bot.jid))
        .await
        .expect("the bot answers disco#info");
    assert!(
        info.identities
            .iter()
            .any(|(c, t, _)| c == "client" && t == "bot"),
        "{info:?}"
    );
    assert!(info.has_feature("urn:xmpp:ping"));
    let ping = minidom::Element::builder("ping", "urn:xmpp:ping").build();
    let bot_full = format!("{}/{resource}", bot.jid);
    assert_eq!(
        probe.iq_get(&bot_full, ping).await,
        Ok(None),
        "XEP-0199 ping answered"
    );
    let unknown = minidom::Element::builder("query", "jabber:iq:version").build();
    let refused = probe.iq_get(&bot_full, unknown).await.unwrap_err();
    assert!(refused.contains("service-unavailable"), "{refused}");

    let status = bot.stop(); // SIGTERM
    assert_eq!(status.code(), Some(0), "{}", bot.log_tail(30));
    assert!(bot.log_text().contains("SIGTERM received"));
    // The unused room was closed with reason shutdown.
    let rooms = store.rooms(&Default::default()).await.unwrap();
    assert!(
        rooms
            .iter()
            .all(|r| r.close_reason == Some(helpim_bot::model::CloseReason::Shutdown)),
        "{rooms:?}"
    );

    bot.spawn();
    wait_available(&store, &bot.jid, 1).await;
    bot.signal("INT");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = bot.exited() {
            break status;
        }
        assert!(Instant::now() < deadline, "no exit after SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "{}", bot.log_tail(30));
    assert!(bot.log_text().contains("SIGINT received"));

    // The operator's look-up commands read the same database.
    let config = bot.config.to_str().unwrap().to_owned();
    let output = helpim_bot(&["--config", &config, "rooms", "--status", "closed"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let listing = String::from_utf8_lossy(&output.stdout);
    assert_eq!(listing.lines().count(), 2, "{listing}");
    assert!(listing.contains("closed"), "{listing}");
    let first = store.rooms(&Default::default()).await.unwrap().remove(0);
    let output = helpim_bot(&["--config", &config, "history", &first.jid]);
    assert!(output.status.success(), "{}", stderr(&output));
    let history = String::from_utf8_lossy(&output.stdout);
    assert!(history.contains("created"), "{history}");
    assert!(history.contains("available → closed"), "{history}");
    assert!(history.contains("bot shut down"), "{history}");
    let output = helpim_bot(&["--config", &config, "history", "no-such-room@x"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("no room"), "{}", stderr(&output));
}

#[tokio::test]
async fn claim_prints_json_and_exits_3_when_nothing_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), 5222, "pw", "");
    let store = helpim_bot::store::Store::connect(&format!(
        "sqlite://{}/bot.sqlite?mode=rwc",
        dir.path().display()
    ))
    .await
    .unwrap();
    store.migrate().await.unwrap();
    // Claims take only rooms of a live bot.
    common::db::live_bot(&store, "helpim-bot@localhost").await;
    let room = store
        .create_room(&helpim_bot::store::NewRoom {
            jid: "helpim-x@conference.localhost".into(),
            password: "secret".into(),
            bot_jid: "helpim-bot@localhost".into(),
            at: helpim_bot::store::now(),
        })
        .await
        .unwrap();
    let config = path.to_str().unwrap();
    let output = helpim_bot(&["--config", config, "claim", "staff", "--by", "staff:42"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let claim: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    assert_eq!(claim["jid"], "helpim-x@conference.localhost");
    assert_eq!(claim["password"], "secret");
    assert_eq!(claim["room_id"], room.id);
    let row = store.room(room.id).await.unwrap().unwrap();
    assert_eq!(row.staff_claimed_by.as_deref(), Some("staff:42"));

    for role in ["staff", "client"] {
        let output = helpim_bot(&["--config", config, "claim", role]);
        assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
        let err = stderr(&output);
        assert_eq!(err.lines().count(), 1, "one line, no trace: {err}");
        assert!(
            err.contains(&format!("no {role} room can be claimed")),
            "{err}"
        );
    }
}

#[tokio::test]
async fn starttls_with_a_trusted_certificate_works_and_an_untrusted_one_is_refused() {
    let server = TestProsody::start_with_tls();
    let ca = server
        .ca_file()
        .expect("TLS server")
        .to_str()
        .unwrap()
        .to_owned();
    let db = TestDb::new(Backend::SqliteFile);
    let store = db.store().await;
    // Trusting the test CA: the bot logs in over STARTTLS and fills its pool.
    let mut bot = TestBot::start(
        &server,
        &db.url,
        BotOptions {
            available: 1,
            tls_required: true,
            env: vec![("SSL_CERT_FILE".into(), ca)],
            ..Default::default()
        },
    );
    wait_available(&store, &bot.jid, 1).await;
    assert_eq!(bot.stop().code(), Some(0));

    // Without it (the system's roots only): the certificate is refused, clearly, in time.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bot.toml");
    let config = std::fs::read_to_string(&bot.config)
        .unwrap()
        .replace("connect_secs", "unused_key_never_written")
        .replace("lease_secs = 3", "lease_secs = 3\nconnect_secs = 3");
    std::fs::write(&path, config).unwrap();
    let started = Instant::now();
    let output = helpim_bot(&["--config", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    let err = stderr(&output);
    assert!(err.contains("could not reach the XMPP server"), "{err}");
    assert!(
        err.to_lowercase().contains("certificate"),
        "the cause is named: {err}"
    );
}
