//! The server freezes (SIGSTOP of every server process, from outside the
//! process): `get()` keeps to `connection_timeout`, connects the pool gave
//! up on do not log in later, and helper threads stay bounded (issue 15,
//! items 1 and 2). The scenarios are shared with the other driver:
//! [`pool_testkit::scenarios::freeze`].

mod common;

use common::Mysql;
use pool_testkit::scenarios::freeze;

#[test]
fn get_keeps_to_connection_timeout_when_the_server_freezes_under_idle_connections() {
    freeze::get_keeps_to_connection_timeout_under_idle_connections::<Mysql>();
}

#[test]
fn get_keeps_to_connection_timeout_when_connects_hang_on_a_frozen_server() {
    freeze::get_keeps_to_connection_timeout_when_connects_hang::<Mysql>();
}

#[test]
fn connects_abandoned_during_a_freeze_never_log_in_and_helper_threads_stay_bounded() {
    freeze::connects_given_up_during_a_freeze::<Mysql>();
}
