//! pool-core's `diesel` feature on MariaDB through diesel's `MysqlConnection`
//! (a throwaway server from pool-testkit): see `common/suite.rs`.

mod common;

diesel_suite!(
    diesel::MysqlConnection,
    common::mariadb,
    &["SELECT CAST(CONNECTION_ID() AS SIGNED) AS id"]
);
