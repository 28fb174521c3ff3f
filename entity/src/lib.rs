//! SeaORM entities of helpim-bot: the tables that the bot writes and the helpline's web
//! application reads and claims from.
//!
//! The column names and the meaning of every string value are a contract with the web
//! application (see `helpim_bot::model` for the strings): change them only together with a
//! migration and the web application. Status-like columns are plain strings here so that a
//! damaged or newer value can still be loaded and reported by the store, never guessed at.

pub mod bot_instance;
pub mod room;
pub mod room_event;

#[cfg(test)]
mod tests {
    use super::{room, room_event};
    use sea_orm::EntityName;

    fn column_names<C: sea_orm::ColumnTrait>() -> Vec<String> {
        C::iter().map(|c| c.as_str().to_owned()).collect()
    }

    /// The web application reads these exact names; a renamed field would silently break it.
    #[test]
    fn room_columns_are_the_contract() {
        assert_eq!(room::Entity.table_name(), "room");
        assert_eq!(
            column_names::<room::Column>(),
            [
                "id",
                "jid",
                "password",
                "status",
                "bot_jid",
                "staff_nick",
                "client_nick",
                "staff_claimed_at",
                "staff_claimed_by",
                "client_claimed_at",
                "client_claimed_by",
                "created_at",
                "status_changed_at",
                "closed_at",
                "close_reason",
                "staff_jid",
                "client_jid",
                "staff_claimed_jid",
                "client_claimed_jid",
                "extra_claimed_at",
                "extra_claimed_by",
                "extra_claimed_jid",
                "destroyed_at",
                "personal_data_removed_at",
            ]
        );
    }

    #[test]
    fn room_event_columns_are_the_contract() {
        assert_eq!(room_event::Entity.table_name(), "room_event");
        assert_eq!(
            column_names::<room_event::Column>(),
            [
                "id",
                "room_id",
                "kind",
                "from_status",
                "to_status",
                "at",
                "nick",
                "role",
                "detail",
                "close_reason",
            ]
        );
    }
}
