//! Rows the bot cannot decode: kept out of every answer, reported once, looked at again.
//!
//! The bot shares its database with a web application it does not control, often written
//! by other people, on other hosts. A row that breaks the contract (a status outside the five
//! values, a close reason the bot does not know, an unreadable or zero timestamp, a NULL where
//! a value belongs) must cost only itself. Every query that reads many rows therefore decodes
//! them one by one ([`decode_each`]): a row that fails is set aside as a [`BadRow`] instead of
//! failing the whole query, and everything else is managed as usual.
//!
//! The [`Quarantine`] remembers the bad rows. Each is logged once, at ERROR, naming its table,
//! id, column and value, with what to do about it. The metric `helpim_bad_rows` and the status
//! page count and list them. A row is forgotten, with an INFO line, as soon as a read finds
//! it readable again.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ColumnType, EntityTrait, FromQueryResult, IdenStatic, Iterable, QueryResult,
};

/// One row the bot could not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRow {
    /// The table (`room`, `room_event`).
    pub table: &'static str,
    /// The row's id.
    pub id: i64,
    /// The column whose value could not be decoded.
    pub column: String,
    /// The value as the database gave it, or what went wrong reading it when not even that
    /// could be read (a zero date, say).
    pub value: String,
}

impl std::fmt::Display for BadRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} row {}: column {} holds {}",
            self.table, self.id, self.column, self.value
        )
    }
}

/// The bad rows found so far, shared by every clone of the store. A row is in it from the
/// first read that could not decode it until a read decodes it again.
#[derive(Debug, Clone, Default)]
pub struct Quarantine {
    rows: Arc<Mutex<BTreeMap<(&'static str, i64), BadRow>>>,
}

impl Quarantine {
    /// Sets `bad` aside: a row not yet quarantined is logged (ERROR, once) and counted.
    pub fn report(&self, bad: &[BadRow]) {
        if bad.is_empty() {
            return;
        }
        let mut rows = self.rows.lock().expect("quarantine lock");
        for row in bad {
            let key = (row.table, row.id);
            if rows.get(&key) != Some(row) {
                log::error!(
                    "{row}, which is not part of the contract (docs/webapp-contract.md): the \
                     row is skipped and everything else is managed as usual; correct or \
                     delete it, and the bot takes it up again"
                );
                rows.insert(key, row.clone());
            }
        }
    }

    /// Rows of `table` with these ids were read and decoded: those that were quarantined
    /// are readable again.
    pub fn readable(&self, table: &'static str, ids: impl IntoIterator<Item = i64>) {
        let mut rows = self.rows.lock().expect("quarantine lock");
        if rows.is_empty() {
            return;
        }
        for id in ids {
            if rows.remove(&(table, id)).is_some() {
                log::info!("{table} row {id} is readable again: it is managed as usual");
            }
        }
    }

    /// The bad rows, by table and id.
    pub fn rows(&self) -> Vec<BadRow> {
        let rows = self.rows.lock().expect("quarantine lock");
        rows.values().cloned().collect()
    }

    /// How many rows are quarantined.
    pub fn len(&self) -> usize {
        self.rows.lock().expect("quarantine lock").len()
    }

    /// Whether no row is quarantined.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Decodes each of `results` as a model of `E`, then as `T` (where the contract's strings
/// are checked), one by one: the rows that decode, and a [`BadRow`] for each that does not.
pub fn decode_each<E, T>(
    table: &'static str,
    results: Vec<QueryResult>,
    validate: impl Fn(E::Model) -> Result<T, BadRow>,
) -> (Vec<T>, Vec<BadRow>)
where
    E: EntityTrait,
    E::Model: FromQueryResult,
{
    let mut good = Vec::with_capacity(results.len());
    let mut bad = Vec::new();
    for result in results {
        match E::Model::from_query_result(&result, "") {
            Ok(model) => match validate(model) {
                Ok(row) => good.push(row),
                Err(row) => bad.push(row),
            },
            Err(error) => bad.push(culprit::<E>(table, &result, &error.to_string())),
        }
    }
    (good, bad)
}

/// Finds which column of a row that failed to decode is at fault, by reading each column
/// alone with the type the entity gives it.
fn culprit<E: EntityTrait>(table: &'static str, row: &QueryResult, error: &str) -> BadRow {
    let id = row.try_get::<i64>("", "id").unwrap_or(-1);
    for column in E::Column::iter() {
        let name = column.as_str();
        let nullable = column.def().is_null();
        let fails = match column.def().get_column_type() {
            ColumnType::TimestampWithTimeZone | ColumnType::DateTime | ColumnType::Timestamp => {
                if nullable {
                    row.try_get::<Option<DateTime<Utc>>>("", name).err()
                } else {
                    row.try_get::<DateTime<Utc>>("", name).err()
                }
            }
            ColumnType::BigInteger | ColumnType::Integer => {
                if nullable {
                    row.try_get::<Option<i64>>("", name).err()
                } else {
                    row.try_get::<i64>("", name).err()
                }
            }
            _ => {
                if nullable {
                    row.try_get::<Option<String>>("", name).err()
                } else {
                    row.try_get::<String>("", name).err()
                }
            }
        };
        if let Some(why) = fails {
            let value = match row.try_get::<Option<String>>("", name) {
                Ok(Some(text)) => format!("{text:?}"),
                Ok(None) => "NULL".to_owned(),
                Err(_) => format!("a value it cannot read ({why})"),
            };
            return BadRow {
                table,
                id,
                column: name.to_owned(),
                value,
            };
        }
    }
    BadRow {
        table,
        id,
        column: "?".to_owned(),
        value: format!("a value it cannot read ({error})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(id: i64, value: &str) -> BadRow {
        BadRow {
            table: "room",
            id,
            column: "status".into(),
            value: format!("{value:?}"),
        }
    }

    #[test]
    fn a_bad_row_is_counted_once_and_forgotten_when_readable() {
        let quarantine = Quarantine::default();
        quarantine.report(&[bad(2, "Chatting")]);
        quarantine.report(&[bad(2, "Chatting"), bad(5, "")]);
        assert_eq!(quarantine.len(), 2);
        assert_eq!(
            quarantine.rows()[0].to_string(),
            "room row 2: column status holds \"Chatting\""
        );
        quarantine.readable("room", [1, 2, 3]);
        assert_eq!(quarantine.rows(), [bad(5, "")]);
        quarantine.readable("room_event", [5]);
        assert_eq!(quarantine.len(), 1, "another table's row 5 is another row");
    }
}
