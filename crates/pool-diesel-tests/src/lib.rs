//! Tests of pool-core's `diesel` feature, written as a diesel user would
//! write them: `tests/sqlite.rs`, `tests/postgres.rs` and `tests/mariadb.rs`
//! run one suite (`tests/common/suite.rs`) on each backend, and
//! `examples/diesel_readme.rs` is the README's "Migrating from diesel's
//! r2d2" example. The library itself is empty; it exists so that these
//! tests, which need libpq and the MySQL client library, live outside
//! pool-core's own tests.
