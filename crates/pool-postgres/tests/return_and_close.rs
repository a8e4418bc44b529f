//! `state()` and `close()` right after a loan, while the session's reset runs
//! in the background (issue 15, item 5): a returned connection is not
//! reported as lent, and `close()` leaves no session on the server.

mod common;

use std::time::{Duration, Instant};

use common::{serial, with_params};
use pool_postgres::builder_from_url;
use pool_testkit::PgServer;

#[test]
fn state_right_after_drop_shows_no_connection_lent() {
    pool_testkit::require_or_skip!(PgServer::binaries_available());
    let pg = pool_testkit::shared_pg().expect("start postgres");
    let (builder, manager) =
        builder_from_url(&with_params(&pg.url(), "connection_limit=2")).unwrap();
    let pool = builder.build(manager).expect("pool");
    for round in 0..5 {
        let mut conn = pool.get().unwrap();
        // A used session, so its return resets it.
        conn.batch_execute("SET work_mem = '8MB'; SELECT 1")
            .unwrap();
        drop(conn);
        let state = pool.state();
        assert_eq!(
            state.active, 0,
            "round {round}: state() right after the only loan came back: {state}"
        );
    }
}

#[test]
fn close_right_after_a_loan_leaves_no_session_on_the_server() {
    pool_testkit::require_or_skip!(PgServer::binaries_available());
    let _serial = serial();
    // Its own server: the check counts every session of the test user.
    let pg = PgServer::start().expect("start postgres");
    for round in 0..10 {
        let (builder, manager) =
            builder_from_url(&with_params(&pg.url(), "connection_limit=2")).unwrap();
        let pool = builder.build(manager).expect("pool");
        let mut conn = pool.get().unwrap();
        conn.batch_execute("SET work_mem = '8MB'; SELECT 1")
            .unwrap();
        drop(conn);
        pool.close();
        let state = pool.state();
        let start = Instant::now();
        let mut sessions = pg.session_count().unwrap();
        while sessions > 0 && start.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(20));
            sessions = pg.session_count().unwrap();
        }
        assert_eq!(
            sessions, 0,
            "round {round}: 2 s after close(), the server still has {sessions} session(s) \
             of the pool's user"
        );
        assert_eq!(
            state.total, 0,
            "round {round}: state() after close() right after a loan: {state}"
        );
    }
}
