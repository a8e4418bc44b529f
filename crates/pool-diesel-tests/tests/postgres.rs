//! pool-core's `diesel` feature on PostgreSQL (a throwaway server from
//! pool-testkit): see `common/suite.rs`.

mod common;

diesel_suite!(
    diesel::PgConnection,
    common::postgres,
    &["SELECT pg_backend_pid()::bigint AS id"]
);
