//! Proves the test harness itself: real Prosody instances (tests/common/prosody.rs) and
//! real XMPP clients (tests/common/client.rs).
//!
//! Needs Prosody installed (`apt-get install -y prosody`); each test starts its own server.

mod common;

use std::time::{Duration, Instant};

use minidom::Element;
use rand::RngExt;

use common::client::{
    ConnectError, JoinError, NS_DATA_FORMS, NS_MUC_OWNER, TestClient, form_fields,
};
use common::prosody::TestProsody;

const WAIT: Duration = Duration::from_secs(5);

fn unique_room(server: &TestProsody) -> String {
    let n: u64 = rand::rng().random_range(0..u64::MAX);
    format!("test-{n:016x}@{}", server.muc_domain)
}

fn random_password() -> String {
    let n: u64 = rand::rng().random_range(0..u64::MAX);
    format!("pw-{n:016x}")
}

fn attr_name(name: &str) -> minidom::rxml::NcName {
    minidom::rxml::NcName::try_from(name).expect("valid XML attribute name")
}

/// `<field var=VAR><value>VALUE</value></field>`
fn field(var: &str, value: &str) -> Element {
    Element::builder("field", NS_DATA_FORMS)
        .attr(attr_name("var"), var)
        .append(
            Element::builder("value", NS_DATA_FORMS)
                .append(value)
                .build(),
        )
        .build()
}

/// Fetches the owner configuration form of a room and submits it with a room password.
/// Returns the fields of the form as fetched.
async fn configure_room_password(
    owner: &mut TestClient,
    room: &str,
    password: &str,
) -> std::collections::BTreeMap<String, Vec<String>> {
    let query = Element::builder("query", NS_MUC_OWNER).build();
    let form = owner
        .iq_get(room, query)
        .await
        .expect("owner config form request refused")
        .expect("empty answer to the owner config form request");
    let x = form
        .get_child("x", NS_DATA_FORMS)
        .expect("no data form in the owner config answer");
    let fetched = form_fields(x);

    let submit = Element::builder("x", NS_DATA_FORMS)
        .attr(attr_name("type"), "submit")
        .append(field(
            "FORM_TYPE",
            "http://jabber.org/protocol/muc#roomconfig",
        ))
        .append(field("muc#roomconfig_roomsecret", password))
        .build();
    let query = Element::builder("query", NS_MUC_OWNER)
        .append(submit)
        .build();
    owner
        .iq_set(room, query)
        .await
        .expect("room configuration refused");
    fetched
}

#[tokio::test]
async fn two_servers_run_at_once() {
    let a = TestProsody::start();
    let b = TestProsody::start();
    assert_ne!(a.port, b.port);
    assert_eq!(a.domain, "localhost");
    assert_eq!(a.muc_domain, "conference.localhost");
    assert_eq!(a.jid("alice"), "alice@localhost");

    a.register("alice", "alice-pw");
    b.register("bob", "bob-pw");
    let alice = TestClient::connect(&a, "alice", "alice-pw").await;
    let bob = TestClient::connect(&b, "bob", "bob-pw").await;
    assert_eq!(alice.jid().to_bare().to_string(), "alice@localhost");
    assert_eq!(bob.jid().to_bare().to_string(), "bob@localhost");

    // Accounts are per server: alice does not exist on b.
    let err = TestClient::try_connect(&b, "alice", "alice-pw", WAIT)
        .await
        .err()
        .expect("alice must not log in on the other server");
    assert_eq!(err, ConnectError::AuthFailed("not-authorized".into()));

    alice.disconnect().await;
    bob.disconnect().await;
}

#[tokio::test]
async fn password_protected_room_flow() {
    let server = TestProsody::start();
    server.register("staff", "staff-pw");
    server.register("client", "client-pw");
    let mut staff = TestClient::connect(&server, "staff", "staff-pw").await;
    let mut client = TestClient::connect(&server, "client", "client-pw").await;
    let room = unique_room(&server);
    let secret = random_password();

    // Creation: 110 (self) and 201 (created); the room is locked until configured.
    let joined = staff.join(&room, "staff", None).await.expect("create room");
    assert!(joined.status_codes.contains(&110), "{joined:?}");
    assert!(joined.status_codes.contains(&201), "{joined:?}");
    assert!(joined.occupants.is_empty(), "{joined:?}");
    assert_eq!(
        client.join(&room, "client", Some(&secret)).await,
        Err(JoinError::Refused {
            condition: "item-not-found".into()
        }),
        "a new room must stay locked until its owner configures it"
    );

    let fetched = configure_room_password(&mut staff, &room, &secret).await;
    assert!(
        fetched.contains_key("muc#roomconfig_roomsecret"),
        "{fetched:?}"
    );
    // Prosody 0.12 offers no passwordprotectedroom and no maxusers field (facts file).
    assert!(
        !fetched.contains_key("muc#roomconfig_maxusers"),
        "{fetched:?}"
    );

    let info = client
        .disco_info(&room)
        .await
        .expect("disco#info of the room");
    assert!(info.has_feature("muc_passwordprotected"), "{info:?}");
    assert!(
        info.has_feature("http://jabber.org/protocol/muc"),
        "{info:?}"
    );
    assert!(info.roominfo.is_some(), "{info:?}");

    assert_eq!(
        client.join(&room, "client", None).await,
        Err(JoinError::Refused {
            condition: "not-authorized".into()
        })
    );
    assert_eq!(
        client.join(&room, "client", Some("wrong")).await,
        Err(JoinError::Refused {
            condition: "not-authorized".into()
        })
    );
    let joined = client
        .join(&room, "client", Some(&secret))
        .await
        .expect("join with the password");
    assert!(joined.status_codes.contains(&110), "{joined:?}");
    assert!(!joined.status_codes.contains(&201), "{joined:?}");
    assert_eq!(joined.occupants, vec!["staff".to_owned()]);

    // A taken nick.
    server.register("other", "other-pw");
    let mut other = TestClient::connect(&server, "other", "other-pw").await;
    assert_eq!(
        other.join(&room, "client", Some(&secret)).await,
        Err(JoinError::Refused {
            condition: "conflict".into()
        })
    );

    let seen = staff
        .wait_for_presence(
            &room,
            |p| p.from_nick.as_deref() == Some("client") && p.available,
            WAIT,
        )
        .await;
    assert_eq!(seen.role.as_deref(), Some("participant"), "{seen:?}");

    client.leave(&room, "client").await;
    let seen = staff
        .wait_for_presence(
            &room,
            |p| p.from_nick.as_deref() == Some("client") && !p.available,
            WAIT,
        )
        .await;
    assert!(!seen.destroyed);

    // disco#info errors come back as the condition.
    let missing = format!("missing-{}", unique_room(&server));
    assert_eq!(
        client.disco_info(&missing).await,
        Err("item-not-found".to_owned())
    );

    staff.disconnect().await;
    client.disconnect().await;
    other.disconnect().await;
}

#[tokio::test]
async fn lost_and_clean_disconnects_are_seen_by_the_room() {
    let server = TestProsody::start();
    for user in ["staff", "client", "visitor"] {
        server.register(user, "pw");
    }
    let mut staff = TestClient::connect(&server, "staff", "pw").await;
    let mut client = TestClient::connect(&server, "client", "pw").await;
    let mut visitor = TestClient::connect(&server, "visitor", "pw").await;
    let room = unique_room(&server);
    let secret = random_password();
    staff.join(&room, "staff", None).await.expect("create");
    configure_room_password(&mut staff, &room, &secret).await;
    client
        .join(&room, "client", Some(&secret))
        .await
        .expect("join");
    visitor
        .join(&room, "visitor", Some(&secret))
        .await
        .expect("join");

    // Lost connection: no unavailable presence from the client, Prosody notices the EOF.
    let started = Instant::now();
    client.drop_connection().await;
    staff
        .wait_for_presence(
            &room,
            |p| p.from_nick.as_deref() == Some("client") && !p.available,
            WAIT,
        )
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // Clean stream end.
    visitor.disconnect().await;
    staff
        .wait_for_presence(
            &room,
            |p| p.from_nick.as_deref() == Some("visitor") && !p.available,
            WAIT,
        )
        .await;

    // The client did not come back on its own (no reconnect after drop_connection).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let info = staff.disco_info(&room).await.expect("disco#info");
    assert_eq!(
        info.roominfo_value("muc#roominfo_occupants"),
        Some("1"),
        "{info:?}"
    );
    assert_eq!(staff.sessions(), 1);
    staff.disconnect().await;
}

#[tokio::test]
async fn destroyed_room_is_reported() {
    let server = TestProsody::start();
    server.register("staff", "pw");
    server.register("client", "pw");
    let mut staff = TestClient::connect(&server, "staff", "pw").await;
    let mut client = TestClient::connect(&server, "client", "pw").await;
    let room = unique_room(&server);
    let secret = random_password();
    staff.join(&room, "staff", None).await.expect("create");
    configure_room_password(&mut staff, &room, &secret).await;
    client
        .join(&room, "client", Some(&secret))
        .await
        .expect("join");

    let destroy = Element::builder("query", NS_MUC_OWNER)
        .append(
            Element::builder("destroy", NS_MUC_OWNER)
                .append(
                    Element::builder("reason", NS_MUC_OWNER)
                        .append("chat ended")
                        .build(),
                )
                .build(),
        )
        .build();
    staff.iq_set(&room, destroy).await.expect("destroy");

    let seen = client
        .wait_for_presence(&room, |p| !p.available, WAIT)
        .await;
    assert!(seen.destroyed, "{seen:?}");
    assert_eq!(seen.reason.as_deref(), Some("chat ended"), "{seen:?}");
    assert_eq!(seen.from_nick.as_deref(), Some("client"), "{seen:?}");
    // The owner gets its OWN unavailable (110), not an occupant leaving.
    let own = staff.wait_for_presence(&room, |p| !p.available, WAIT).await;
    assert_eq!(own.from_nick.as_deref(), Some("staff"), "{own:?}");
    assert!(own.status_codes.contains(&110), "{own:?}");
    assert_eq!(
        client.disco_info(&room).await,
        Err("item-not-found".to_owned())
    );
    staff.disconnect().await;
    client.disconnect().await;
}

#[tokio::test]
async fn restart_on_same_port() {
    let mut server = TestProsody::start();
    server.register("alice", "alice-pw");
    let port = server.port;
    let alice = TestClient::connect(&server, "alice", "alice-pw").await;
    alice.disconnect().await;

    server.stop();
    assert!(!server.is_running());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port still open after stop()"
    );
    // Registration works while stopped too; both accounts survive the restart.
    server.register("bob", "bob-pw");
    server.start_again();
    assert_eq!(server.port, port);
    assert!(server.is_running());

    let alice = TestClient::connect(&server, "alice", "alice-pw").await;
    let bob = TestClient::connect(&server, "bob", "bob-pw").await;
    alice.disconnect().await;
    bob.disconnect().await;
    assert!(server.log_tail(5).contains("prosody.log"));
}

#[tokio::test]
async fn restart_with_clients_connected() {
    let mut server = TestProsody::start();
    server.register("alice", "alice-pw");
    let alice = TestClient::connect(&server, "alice", "alice-pw").await;
    let started = Instant::now();
    server.stop();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "stop() with a client connected took {:?}",
        started.elapsed()
    );
    server.start_again();
    let again = TestClient::connect(&server, "alice", "alice-pw").await;
    again.disconnect().await;
    alice.drop_connection().await;
}

#[tokio::test]
async fn wrong_password_fails_fast() {
    let server = TestProsody::start();
    server.register("alice", "alice-pw");
    let started = Instant::now();
    let result = TestClient::try_connect(&server, "alice", "not-the-password", WAIT).await;
    assert_eq!(
        result.err(),
        Some(ConnectError::AuthFailed("not-authorized".into()))
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    // The right password still works afterwards.
    let alice = TestClient::connect(&server, "alice", "alice-pw").await;
    alice.disconnect().await;
}
