//! Typed queries over the SeaORM entities: the only place that talks SQL.
