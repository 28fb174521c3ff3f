//! One test world: an XMPP server, a database, and the real bot between them.

use helpim_bot::store::{Room, RoomEvent, Store};

use super::bot::{BotOptions, TestBot, wait_available};
use super::client::TestClient;
use super::db::{Backend, TestDb};
use super::server::{ServerKind, XmppServer};

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
        let server = super::server::start(kind);
        let db = TestDb::new(backend);
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

    /// Waits until the bot has exactly `n` available rooms.
    pub async fn available(&self, n: usize) -> Vec<Room> {
        wait_available(&self.store, &self.bot.jid, n).await
    }

    /// A room's history.
    pub async fn events(&self, room_id: i64) -> Vec<RoomEvent> {
        self.store.events(room_id).await.expect("events")
    }
}
