//! The `room_event` table: the append-only history of every room, one row per thing that
//! happened (statistics are computed from it).

use sea_orm::entity::prelude::*;

/// An event row as stored; `helpim_bot::store` validates it into a typed event.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "room_event")]
pub struct Model {
    /// Surrogate key; its order is the order in which events were recorded.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The room this happened in.
    pub room_id: i64,
    /// What happened (`created`, `entered`, `left`, ...).
    pub kind: String,
    /// The room's status before the event; NULL for the creation event.
    pub from_status: Option<String>,
    /// The room's status after the event.
    pub to_status: String,
    /// When it happened.
    pub at: DateTimeUtc,
    /// The nick of the person concerned, if any.
    pub nick: Option<String>,
    /// The part that person plays (`staff`, `client`, `intruder`), if any.
    pub role: Option<String>,
    /// Why, in words, for people reading the history.
    pub detail: String,
    /// On the event that closed the room: why it closed (`completed`, `no_client`, ...).
    pub close_reason: Option<String>,
}

/// An event belongs to a room.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The room the event happened in.
    #[sea_orm(
        belongs_to = "super::room::Entity",
        from = "Column::RoomId",
        to = "super::room::Column::Id"
    )]
    Room,
}

impl Related<super::room::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Room.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
