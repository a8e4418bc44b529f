//! pool-core's `diesel` feature on SQLite (compiled in): see `common/suite.rs`.

use libsqlite3_sys as _; // only for its `bundled` feature

mod common;

diesel_suite!(
    diesel::SqliteConnection,
    common::sqlite,
    &[
        "CREATE TEMP TABLE IF NOT EXISTS session_id AS SELECT abs(random() % 1000000000) AS id",
        "SELECT id FROM session_id",
    ]
);
