//! PostgreSQL only: a trigger announces every claim and every released claim on the
//! `helpim_room` channel, as the bot announces its own transitions.
//!
//! The bot's transitions send `NOTIFY helpim_room, '<room id> <status>'` from the
//! transaction that makes them (`helpim_bot::store`). Claims are written by the web
//! applications themselves, with the contract's SQL, in whatever language they are written
//! in; a trigger makes every one of them (and the bot's releases of expired claims) announce
//! itself in its own transaction, without any web application changing a line. It fires
//! only when a claim column changes (`staff_claimed_at`, `client_claimed_at`,
//! `extra_claimed_at`), so the bot's own updates are not announced twice.
//!
//! On SQLite and MySQL/MariaDB this migration does nothing: they have no LISTEN/NOTIFY, and
//! web applications poll (see `docs/webapp-contract.md`).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The trigger function: one notification with the room's id and current status.
const CREATE_FUNCTION: &str = "CREATE OR REPLACE FUNCTION helpim_room_notify_claim() \
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('helpim_room', NEW.id::text || ' ' || NEW.status);
    RETURN NULL;
END
$$";

/// The trigger: after a claim column of a row changes.
const CREATE_TRIGGER: &str = "CREATE TRIGGER helpim_room_notify_claim
AFTER UPDATE OF staff_claimed_at, client_claimed_at, extra_claimed_at ON room
FOR EACH ROW
WHEN (OLD.staff_claimed_at IS DISTINCT FROM NEW.staff_claimed_at
   OR OLD.client_claimed_at IS DISTINCT FROM NEW.client_claimed_at
   OR OLD.extra_claimed_at IS DISTINCT FROM NEW.extra_claimed_at)
EXECUTE FUNCTION helpim_room_notify_claim()";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        db.execute_unprepared(CREATE_FUNCTION).await?;
        db.execute_unprepared(CREATE_TRIGGER).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        db.execute_unprepared("DROP TRIGGER IF EXISTS helpim_room_notify_claim ON room")
            .await?;
        db.execute_unprepared("DROP FUNCTION IF EXISTS helpim_room_notify_claim()")
            .await?;
        Ok(())
    }
}
