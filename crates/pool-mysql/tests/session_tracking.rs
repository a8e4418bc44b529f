//! `Isolation::Full` resets a used connection only as far as the server's
//! session-state reports and the statements' text show it needs: nothing
//! after a loan that changed nothing, `ROLLBACK` after one that left only a
//! transaction open, the full `COM_RESET_CONNECTION` otherwise. (That every
//! leftover is still undone is `isolation.rs`'s job.)
//!
//! A full reset clears the driver's statement cache, so "the statement
//! prepared by the previous loan has the same id" is what a user sees of
//! "no full reset"; the server's `Com_rollback` counter shows the light one.
//! One dedicated server, so that no other test moves its counters.

mod common;

use std::time::Duration;

use common::root;
use mysql::prelude::Queryable;
use mysql::Conn;
use pool_core::Pool;
use pool_mysql::{MysqlConnection, MysqlManager};
use pool_testkit::MariaDbServer;

const QUERY: &str = "SELECT ? + 1";

fn pool_of_one(url: &str, track: bool) -> Pool<MysqlManager> {
    let (manager, _) = MysqlManager::from_url(url).unwrap();
    Pool::builder()
        .max_size(1)
        .connection_timeout(Duration::from_secs(5))
        .build(manager.track_session_state(track))
        .expect("pool")
}

fn statement_id(c: &mut MysqlConnection) -> u32 {
    c.prep(QUERY).unwrap().id()
}

fn rollbacks(admin: &mut Conn) -> u64 {
    let row: Option<(String, u64)> = admin
        .query_first("SHOW GLOBAL STATUS LIKE 'Com_rollback'")
        .unwrap();
    row.unwrap().1
}

fn in_transaction(admin: &mut Conn, c: &mut MysqlConnection) -> bool {
    let me: Option<u32> = c.query_first("SELECT CONNECTION_ID()").unwrap();
    let n: Option<i64> = admin
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.INNODB_TRX WHERE trx_mysql_thread_id = ?",
            (me,),
        )
        .unwrap();
    n != Some(0)
}

#[test]
fn a_full_isolation_reset_does_only_what_the_loan_needs() {
    pool_testkit::require_or_skip!(MariaDbServer::binaries_available());
    let server = MariaDbServer::start().expect("start mariadb");
    let mut admin = root(&server);
    admin
        .query_drop(format!(
            "CREATE TABLE {}.tracked (id INT PRIMARY KEY, n INT NOT NULL) ENGINE=InnoDB; \
             INSERT INTO {}.tracked VALUES (1, 0)",
            pool_testkit::MARIADB_DATABASE,
            pool_testkit::MARIADB_DATABASE
        ))
        .unwrap();
    let pool = pool_of_one(&server.url(), true);
    let first = statement_id(&mut pool.get().unwrap());

    // A loan of plain statements: no reset at all.
    let before = rollbacks(&mut admin);
    {
        let mut c = pool.get().unwrap();
        let one: Option<i64> = c.query_first("SELECT 1").unwrap();
        assert_eq!(one, Some(1));
        let two: Option<i64> = c.exec_first(QUERY, (1,)).unwrap();
        assert_eq!(two, Some(2));
        c.exec_drop("UPDATE tracked SET n = n + 1 WHERE id = ?", (1,))
            .unwrap();
        let _: Option<i64> = c.query_first("SELECT n FROM tracked WHERE id = 1").unwrap();
    }
    {
        let mut c = pool.get().unwrap();
        assert_eq!(
            statement_id(&mut c),
            first,
            "a plain loan was reset in full"
        );
    }
    assert_eq!(
        rollbacks(&mut admin),
        before,
        "a plain loan was rolled back"
    );

    // A transaction left open: one ROLLBACK, and the statements survive.
    let before = rollbacks(&mut admin);
    {
        let mut c = pool.get().unwrap();
        c.query_drop("BEGIN").unwrap();
        c.exec_drop("UPDATE tracked SET n = n + 1 WHERE id = ?", (1,))
            .unwrap();
    }
    {
        let mut c = pool.get().unwrap();
        assert!(
            !in_transaction(&mut admin, &mut c),
            "still in the transaction"
        );
        assert_eq!(
            statement_id(&mut c),
            first,
            "an open transaction cost a full reset"
        );
    }
    assert_eq!(
        rollbacks(&mut admin),
        before + 1,
        "no ROLLBACK for an open transaction"
    );

    // A transaction begun and committed in the loan: nothing.
    let before = rollbacks(&mut admin);
    {
        let mut c = pool.get().unwrap();
        c.query_drop("START TRANSACTION").unwrap();
        c.exec_drop("UPDATE tracked SET n = n + 1 WHERE id = ?", (1,))
            .unwrap();
        c.query_drop("COMMIT").unwrap();
    }
    {
        let mut c = pool.get().unwrap();
        assert_eq!(
            statement_id(&mut c),
            first,
            "a committed transaction was reset"
        );
    }
    assert_eq!(
        rollbacks(&mut admin),
        before,
        "a committed transaction was rolled back"
    );

    // The same through the pooled connection's own start_transaction
    // (watched): committed, nothing; dropped, its own ROLLBACK and nothing
    // more.
    let before = rollbacks(&mut admin);
    {
        let mut c = pool.get().unwrap();
        let mut tx = c.start_transaction(mysql::TxOpts::default()).unwrap();
        tx.exec_drop("UPDATE tracked SET n = n + 1 WHERE id = ?", (1,))
            .unwrap();
        // mysql::Transaction's accessors, with their signatures.
        assert_eq!(tx.affected_rows(), 1);
        assert_eq!(tx.last_insert_id(), None);
        let _: Option<i64> = tx.exec_first(QUERY, (1,)).unwrap();
        tx.commit().unwrap();
    }
    {
        let mut c = pool.get().unwrap();
        let tx = c.start_transaction(mysql::TxOpts::default()).unwrap();
        drop(tx);
    }
    {
        let mut c = pool.get().unwrap();
        assert!(
            !in_transaction(&mut admin, &mut c),
            "still in the transaction"
        );
        assert_eq!(
            statement_id(&mut c),
            first,
            "a watched transaction was reset"
        );
    }
    assert_eq!(
        rollbacks(&mut admin),
        before + 1,
        "only the dropped transaction's ROLLBACK"
    );

    // A watched transaction that sets session state inside: the full reset.
    {
        let mut c = pool.get().unwrap();
        let mut tx = c.start_transaction(mysql::TxOpts::default()).unwrap();
        tx.query_drop("SET @inside = 1").unwrap();
        tx.commit().unwrap();
    }
    {
        let mut c = pool.get().unwrap();
        let inside: Option<Option<i64>> = c.query_first("SELECT @inside").unwrap();
        assert_eq!(inside, Some(None), "a transaction's SET @inside leaked");
    }
    let first = statement_id(&mut pool.get().unwrap());

    // Session state: the full reset (the statement cache goes with it).
    {
        let mut c = pool.get().unwrap();
        c.query_drop("SET @tenant = 3").unwrap();
    }
    {
        let mut c = pool.get().unwrap();
        let tenant: Option<Option<i64>> = c.query_first("SELECT @tenant").unwrap();
        assert_eq!(tenant, Some(None));
        assert_ne!(
            statement_id(&mut c),
            first,
            "SET @tenant did not cost a full reset"
        );
    }
    assert_eq!(pool.state().total, 1);
}

#[test]
fn without_tracking_every_used_connection_is_reset_in_full() {
    pool_testkit::require_or_skip!(MariaDbServer::binaries_available());
    let db = pool_testkit::shared_mariadb().expect("start mariadb");
    let pool = pool_of_one(&db.url(), false);
    let first = statement_id(&mut pool.get().unwrap());
    {
        let mut c = pool.get().unwrap();
        let one: Option<i64> = c.query_first("SELECT 1").unwrap();
        assert_eq!(one, Some(1));
    }
    let mut c = pool.get().unwrap();
    assert_ne!(statement_id(&mut c), first);
}

#[test]
fn the_inner_conn_and_mark_session_changed_ask_for_the_full_reset() {
    pool_testkit::require_or_skip!(MariaDbServer::binaries_available());
    let db = pool_testkit::shared_mariadb().expect("start mariadb");
    let pool = pool_of_one(&db.url(), true);
    let first = statement_id(&mut pool.get().unwrap());
    {
        let mut c = pool.get().unwrap();
        let conn: &mut Conn = &mut c;
        conn.query_drop("SELECT 1").unwrap();
    }
    let second = statement_id(&mut pool.get().unwrap());
    assert_ne!(
        second, first,
        "a loan through DerefMut was not reset in full"
    );
    {
        let mut c = pool.get().unwrap();
        c.query_drop("SELECT 1").unwrap();
        c.mark_session_changed();
    }
    let third = statement_id(&mut pool.get().unwrap());
    assert_ne!(
        third, second,
        "mark_session_changed did not ask for the full reset"
    );
}
