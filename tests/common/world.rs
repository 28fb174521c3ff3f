//! One test world: an XMPP server, a database, and the real bot between them; and the way
//! people get into rooms in production: through a claim made with the contract's library
//! functions, then a join with the claim's room JID and password.

use std::time::Duration;

use helpim_bot::claims::{self, Claim, ClaimError};
use helpim_bot::model::{EventKind, Role, RoomStatus};
use helpim_bot::store::{Room, RoomEvent, Store};

use super::bot::{BotOptions, TestBot, eventually, wait_available, wait_status};
use super::client::TestClient;
use super::db::{Backend, TestDb};
use super::server::{ServerKind, XmppServer};

/// Who the tests claim as (recorded as `staff_claimed_by` / `client_claimed_by`), like one
/// worker of the web application.
pub const CLAIMER: &str = "web";

/// How long a claim helper waits for a room to become claimable (the pool filling, a
/// staff member's entry being written) before failing the test.
const CLAIM_WAIT: Duration = Duration::from_secs(20);

/// Claims a room for a staff member with `claims::claim_staff`, as the web application
/// does: the oldest available room nobody claimed yet. Retries while none is claimable.
pub async fn claim_staff(store: &Store) -> Claim {
    claim(store, Role::Staff).await
}

/// Claims a room for a client with `claims::claim_client`, as the web application does:
/// the room whose staff member has waited longest. Retries while none is claimable.
pub async fn claim_client(store: &Store) -> Claim {
    claim(store, Role::Client).await
}

async fn claim(store: &Store, role: Role) -> Claim {
    eventually(
        &format!("a room to claim for {role}"),
        CLAIM_WAIT,
        || async {
            let result = match role {
                Role::Client => claims::claim_client(store, CLAIMER).await,
                _ => claims::claim_staff(store, CLAIMER).await,
            };
            match result {
                Ok(claim) => Ok(claim),
                Err(ClaimError::NoneAvailable(_)) => Err("none claimable yet".to_owned()),
                Err(other) => panic!("the {role} claim failed: {other}"),
            }
        },
    )
    .await
}

/// `person` enters a room claimed for staff, as `nick`; returns the claim once the room is
/// `staff_waiting`.
pub async fn staff_enters(store: &Store, person: &mut TestClient, nick: &str) -> Claim {
    let claim = claim_staff(store).await;
    person
        .join(&claim.jid, nick, Some(&claim.password))
        .await
        .unwrap_or_else(|e| panic!("staff {nick} joins {}: {e:?}", claim.jid));
    wait_status(store, claim.room_id, RoomStatus::StaffWaiting).await;
    claim
}

/// Claims the client side of `staff`'s room and `person` enters it as `nick`; returns the
/// client claim once the room is `chatting`. The scenario must have no other staff member
/// waiting unclaimed: the claim goes to the longest-waiting one, asserted to be `staff`.
pub async fn client_enters(
    store: &Store,
    staff: &Claim,
    person: &mut TestClient,
    nick: &str,
) -> Claim {
    let claim = claim_client(store).await;
    assert_eq!(
        claim.room_id, staff.room_id,
        "the client claim goes to the only staff member waiting"
    );
    person
        .join(&claim.jid, nick, Some(&claim.password))
        .await
        .unwrap_or_else(|e| panic!("client {nick} joins {}: {e:?}", claim.jid));
    wait_status(store, claim.room_id, RoomStatus::Chatting).await;
    claim
}

/// A server, a database and the bot. Dropped in field order: the bot stops before the
/// server and the database go.
pub struct World {
    /// The bot process.
    pub bot: TestBot,
    /// The test's own view of the database.
    pub store: Store,
    /// The database (dropped last but one).
    pub db: TestDb,
    /// The XMPP server.
    pub server: Box<dyn XmppServer>,
}

impl World {
    /// Starts a fresh server of `kind`, a fresh database on `backend`, and the bot.
    pub async fn start(kind: ServerKind, backend: Backend, options: BotOptions) -> World {
        World::on(super::server::start(kind), backend, options).await
    }

    /// A fresh database on `backend` and the bot, on a server the test started itself (e.g.
    /// with a proxy in front of it).
    pub async fn on(server: Box<dyn XmppServer>, backend: Backend, options: BotOptions) -> World {
        World::with_db(server, TestDb::new(backend), options).await
    }

    /// The bot on a server and a database the test made itself (a database created with
    /// another character set, say).
    pub async fn with_db(server: Box<dyn XmppServer>, db: TestDb, options: BotOptions) -> World {
        let store = db.store().await;
        let bot = TestBot::start(server.as_ref(), &db.url, options);
        World {
            bot,
            store,
            db,
            server,
        }
    }

    /// A connected test user (registered on the fly).
    pub async fn person(&self, user: &str) -> TestClient {
        self.server.register(user, "pw");
        TestClient::connect(self.server.as_ref(), user, "pw").await
    }

    /// Waits until the bot has exactly `n` available rooms (claimed or not).
    pub async fn available(&self, n: usize) -> Vec<Room> {
        wait_available(&self.store, &self.bot.jid, n).await
    }

    /// A room's history.
    pub async fn events(&self, room_id: i64) -> Vec<RoomEvent> {
        self.store.events(room_id).await.expect("events")
    }

    /// The room's first event of `kind`, once the bot has written it (what people see, a
    /// kick say, can arrive before the row is committed).
    pub async fn first_event(&self, room_id: i64, kind: EventKind) -> RoomEvent {
        eventually(&format!("a {kind} event"), CLAIM_WAIT, || async {
            self.events(room_id)
                .await
                .into_iter()
                .find(|e| e.kind == kind)
                .ok_or_else(|| format!("no {kind} event yet"))
        })
        .await
    }

    /// A room's row as it is now.
    pub async fn row(&self, room_id: i64) -> Room {
        self.store
            .room(room_id)
            .await
            .expect("read the room")
            .unwrap_or_else(|| panic!("no room {room_id}"))
    }

    /// A staff claim ([`claim_staff`]).
    pub async fn claim_staff(&self) -> Claim {
        claim_staff(&self.store).await
    }

    /// A client claim ([`claim_client`]).
    pub async fn claim_client(&self) -> Claim {
        claim_client(&self.store).await
    }

    /// [`staff_enters`] in this world.
    pub async fn staff_enters(&self, person: &mut TestClient, nick: &str) -> Claim {
        staff_enters(&self.store, person, nick).await
    }

    /// [`client_enters`] in this world.
    pub async fn client_enters(&self, staff: &Claim, person: &mut TestClient, nick: &str) -> Claim {
        client_enters(&self.store, staff, person, nick).await
    }

    /// A chat: the users `staff` and `client` (registered here) enter a room through their
    /// claims as `staff_nick` and `client_nick`; returns the staff claim (the room) once it
    /// is `chatting`, and both people.
    pub async fn chat(
        &self,
        staff_nick: &str,
        client_nick: &str,
    ) -> (Claim, TestClient, TestClient) {
        let mut staff = self.person("staff").await;
        let claim = self.staff_enters(&mut staff, staff_nick).await;
        let mut client = self.person("client").await;
        self.client_enters(&claim, &mut client, client_nick).await;
        (claim, staff, client)
    }
}

/// `n` chats, one after the other, each entered through its claims as the web application
/// makes them: `Staff{i}` (account `staff`, password `pw`), then `Guest{i}` (account
/// `client`). Returns (the staff claim, staff, client) per chat once every room is
/// `chatting`.
pub async fn open_chats(
    server: &dyn XmppServer,
    store: &Store,
    n: usize,
) -> Vec<(Claim, TestClient, TestClient)> {
    let mut chats = Vec::new();
    for i in 0..n {
        let mut staff = TestClient::connect(server, "staff", "pw").await;
        let mut client = TestClient::connect(server, "client", "pw").await;
        let room = staff_enters(store, &mut staff, &format!("Staff{i}")).await;
        client_enters(store, &room, &mut client, &format!("Guest{i}")).await;
        chats.push((room, staff, client));
    }
    chats
}
