//! Fail fast only when the database is really down (issue 15, item 3): not
//! while the server refuses logins beyond the user's connection limit but
//! serves the pool's connections, and not for ever once it is back. The
//! scenarios are shared with the other driver:
//! [`pool_testkit::scenarios::server_limits`].

mod common;

use common::Mysql;
use pool_testkit::scenarios::server_limits;

#[test]
fn a_user_connection_limit_below_max_size_never_fails_gets_fast() {
    server_limits::a_user_connection_limit_below_max_size_never_fails_gets_fast::<Mysql>();
}

#[test]
fn fail_fast_ends_once_the_server_is_back_even_when_nobody_waits() {
    server_limits::fail_fast_ends_once_the_server_is_back_even_when_nobody_waits::<Mysql>();
}
