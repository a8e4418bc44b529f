//! `Isolation::Full` resets a used connection only as far as the text of
//! its statements shows it needs: nothing after a loan of plain statements,
//! `ROLLBACK` / `DISCARD SEQUENCES` after one that left only a transaction
//! open or moved a sequence, the whole batch otherwise. (That every leftover
//! is still undone is `isolation.rs`'s job.)
//!
//! What a user can see of it: the last statement the server ran for the
//! pool's connection (`pg_stat_activity.query`) once it is back in the pool.

mod common;

use std::time::{Duration, Instant};

use common::{superuser, unique, with_params};
use pool_core::Pool;
use pool_postgres::{PgConnection, PostgresManager};
use pool_testkit::PgServer;
use postgres::Client;

struct Setup {
    pool: Pool<PostgresManager<postgres::NoTls>>,
    observer: Client,
    app: String,
}

fn setup(pg: &PgServer, track: bool) -> Setup {
    let app = unique("tracked");
    let url = with_params(
        &pg.url(),
        &format!("application_name={app}&test_on_check_out=false"),
    );
    let (manager, params) = PostgresManager::from_url(&url).unwrap();
    let pool = params
        .apply(
            Pool::builder()
                .max_size(1)
                .connection_timeout(Duration::from_secs(5)),
        )
        .build(manager.track_session_state(track))
        .expect("pool");
    Setup {
        pool,
        observer: superuser(pg),
        app,
    }
}

impl Setup {
    /// Runs `loan` on a borrowed connection, waits for the connection to be
    /// back, and returns the last statement the server ran for it.
    fn after(&mut self, loan: impl FnOnce(&mut PgConnection)) -> String {
        loan(&mut self.pool.get().unwrap());
        let back = Instant::now();
        while self.pool.state().idle != 1 && back.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(1));
        }
        self.observer
            .query_one(
                "SELECT query FROM pg_stat_activity WHERE application_name = $1",
                &[&self.app],
            )
            .unwrap()
            .get(0)
    }
}

#[test]
fn a_full_isolation_reset_does_only_what_the_loan_needs() {
    pool_testkit::require_or_skip!(PgServer::binaries_available());
    let pg = pool_testkit::shared_pg().expect("start postgres");
    let mut s = setup(pg, true);
    let table = unique("tracked_rows");
    s.after(|c| {
        c.batch_execute(&format!(
            "CREATE TABLE {table} (id serial PRIMARY KEY, n int NOT NULL DEFAULT 0); \
             INSERT INTO {table} (n) VALUES (0)"
        ))
        .unwrap()
    });

    // Plain statements, whichever way they are sent: no reset.
    let update = format!("UPDATE {table} SET n = n + 1 WHERE id = $1");
    let last = s.after(|c| {
        c.simple_query("SELECT 1").unwrap();
        let two: i32 = c.query_one("SELECT $1::int + 1", &[&1_i32]).unwrap().get(0);
        assert_eq!(two, 2);
        let cached = c.prepare_cached("SELECT $1::int * 2").unwrap();
        c.query_one(&cached, &[&2_i32]).unwrap();
        let prepared = c.prepare(&update).unwrap();
        c.execute(&prepared, &[&1_i32]).unwrap();
    });
    assert_eq!(last, update, "a loan of plain statements was reset");

    // A transaction through the connection's own `transaction()`,
    // committed: nothing more.
    let last = s.after(|c| {
        let mut tx = c.transaction().unwrap();
        tx.execute(&update, &[&1_i32]).unwrap();
        let mut inner = tx.transaction().unwrap();
        inner.execute(&update, &[&1_i32]).unwrap();
        inner.rollback().unwrap();
        tx.commit().unwrap();
    });
    assert_eq!(last, "COMMIT");

    // A transaction left open: ROLLBACK only.
    let last = s.after(|c| {
        c.batch_execute("BEGIN").unwrap();
        c.execute(&update, &[&1_i32]).unwrap();
    });
    assert_eq!(last, "ROLLBACK");

    // An INSERT may move a sequence: DISCARD SEQUENCES only.
    let last = s.after(|c| {
        c.execute(&format!("INSERT INTO {table} (n) VALUES ($1)"), &[&7_i32])
            .unwrap();
    });
    assert_eq!(last, "DISCARD SEQUENCES");

    // Session state, an unknown statement, the inner client, or the
    // borrower's own word: the whole batch.
    for (name, loan) in [
        (
            "SET",
            Box::new(|c: &mut PgConnection| c.batch_execute("SET TIME ZONE 'UTC'").unwrap())
                as Box<dyn Fn(&mut PgConnection)>,
        ),
        (
            "a function call",
            Box::new(|c: &mut PgConnection| {
                c.query_one("SELECT pg_advisory_lock(7)", &[]).unwrap();
            }),
        ),
        (
            "the inner client",
            Box::new(|c: &mut PgConnection| {
                let client: &mut Client = c;
                client.simple_query("SELECT 1").unwrap();
            }),
        ),
        (
            "mark_session_changed",
            Box::new(|c: &mut PgConnection| {
                c.simple_query("SELECT 1").unwrap();
                c.mark_session_changed();
            }),
        ),
    ] {
        let last = s.after(loan);
        assert!(last.contains("RESET ALL"), "{name}: {last}");
    }
    s.after(|c| c.batch_execute(&format!("DROP TABLE {table}")).unwrap());
}

#[test]
fn without_tracking_every_used_connection_is_reset_in_full() {
    pool_testkit::require_or_skip!(PgServer::binaries_available());
    let pg = pool_testkit::shared_pg().expect("start postgres");
    let mut s = setup(pg, false);
    let last = s.after(|c| {
        c.simple_query("SELECT 1").unwrap();
    });
    assert!(last.contains("RESET ALL"), "{last}");
}
