//! The `room` table: one row per MUC room the bot ever created, kept after closing for
//! history and statistics.

use sea_orm::entity::prelude::*;

/// A room row as stored; `helpim_bot::store` validates it into a typed room.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "room")]
pub struct Model {
    /// Surrogate key, referenced by `room_event.room_id`.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The full bare room JID (`helpim-abc@conference.example.org`); unique.
    #[sea_orm(unique)]
    pub jid: String,
    /// The room password the web application hands to staff and client; the empty string
    /// once the room is closed (the closing transaction clears it: no secret outlives its
    /// room).
    pub password: String,
    /// `available`, `staff_waiting`, `chatting`, `one_left` or `closed`.
    pub status: String,
    /// The bare JID of the bot instance that owns the room.
    pub bot_jid: String,
    /// The nick of the first person (staff) who entered.
    pub staff_nick: Option<String>,
    /// The nick of the second person (client) who entered.
    pub client_nick: Option<String>,
    /// When the web application claimed the room for a staff member.
    pub staff_claimed_at: Option<DateTimeUtc>,
    /// Who (in the web application's terms) claimed the room for staff.
    pub staff_claimed_by: Option<String>,
    /// When the web application claimed the room for a client.
    pub client_claimed_at: Option<DateTimeUtc>,
    /// Who (in the web application's terms) claimed the room for a client.
    pub client_claimed_by: Option<String>,
    /// When the room was configured on the server and recorded.
    pub created_at: DateTimeUtc,
    /// When `status` last changed (how long staff has been waiting, for instance).
    pub status_changed_at: DateTimeUtc,
    /// When the room became `closed`.
    pub closed_at: Option<DateTimeUtc>,
    /// Why the room was closed (`completed`, `no_client`, ...).
    pub close_reason: Option<String>,
    /// The real bare JID of the person who entered as staff (personal data).
    #[sea_orm(column_type = "Text", nullable)]
    pub staff_jid: Option<String>,
    /// The real bare JID of the person who entered as client (personal data).
    #[sea_orm(column_type = "Text", nullable)]
    pub client_jid: Option<String>,
    /// Written by the web application's staff claim, optionally: only this bare JID may
    /// enter as staff.
    #[sea_orm(column_type = "Text", nullable)]
    pub staff_claimed_jid: Option<String>,
    /// Written by the web application's client claim, optionally: only this bare JID may
    /// enter as client.
    #[sea_orm(column_type = "Text", nullable)]
    pub client_claimed_jid: Option<String>,
    /// When the web application claimed one extra seat in a chat in progress
    /// (`muc.max_chatters` above 2); cleared when the person it admits enters.
    pub extra_claimed_at: Option<DateTimeUtc>,
    /// Who claimed the extra seat.
    pub extra_claimed_by: Option<String>,
    /// The only bare JID the extra claim admits, when bound.
    #[sea_orm(column_type = "Text", nullable)]
    pub extra_claimed_jid: Option<String>,
    /// When the server confirmed that the room is destroyed (or gone); a `closed` row
    /// without it is a room the bot must still destroy.
    pub destroyed_at: Option<DateTimeUtc>,
    /// When the retention purge removed the room's personal data (nicks, JIDs, claimants,
    /// event nicks and details); NULL while they are still stored.
    pub personal_data_removed_at: Option<DateTimeUtc>,
}

/// A room has a history of events.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The room's `room_event` rows.
    #[sea_orm(has_many = "super::room_event::Entity")]
    RoomEvent,
}

impl Related<super::room_event::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::RoomEvent.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
