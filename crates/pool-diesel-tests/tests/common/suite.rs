//! The suite every backend runs, as a macro over the diesel connection type:
//! diesel code written for diesel's r2d2 pool, with only the pool's imports
//! changed, must compile and behave the same on pool-core's loans.
//!
//! `diesel_suite!(Conn, fresh_db, id_statements)`: `fresh_db()` gives a
//! [`Db`](super::Db) (None skips); `id_statements` are SQL statements whose
//! last returns one row with a `BIGINT` column `id` that identifies the
//! server session (the same on one connection, different on another).

#[macro_export]
macro_rules! diesel_suite {
    ($conn:ty, $fresh:path, $id_sql:expr) => {
        use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
        use diesel::prelude::*;
        use diesel::sql_types::BigInt;
        use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
        use pool_core::diesel::{ConnectionManager, TestCustomizer};
        use pool_core::{Customized, OwnedConnection, Pool};
        use std::time::Duration;

        type Manager = ConnectionManager<$conn>;

        const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

        diesel::table! {
            users (id) {
                id -> Integer,
                name -> Text,
            }
        }

        #[derive(QueryableByName)]
        struct Id {
            #[diesel(sql_type = BigInt)]
            id: i64,
        }

        /// The server session behind `conn`.
        fn session_id(conn: &mut $conn) -> i64 {
            let statements: &[&str] = $id_sql;
            let (last, setup) = statements.split_last().unwrap();
            for sql in setup {
                conn.batch_execute(sql).unwrap();
            }
            let rows: Vec<Id> = diesel::sql_query(*last).load(conn).unwrap();
            rows[0].id
        }

        fn create_users(conn: &mut $conn) {
            conn.batch_execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
                .unwrap();
        }

        /// A helper written for a plain connection, as diesel code is.
        fn add_user(conn: &mut $conn, id: i32, name: &str) -> QueryResult<usize> {
            diesel::insert_into(users::table)
                .values((users::id.eq(id), users::name.eq(name)))
                .execute(conn)
        }

        fn pool(url: &str, max_size: u32) -> Pool<Manager> {
            Pool::builder()
                .max_size(max_size)
                .min_idle(Some(0))
                .build(ConnectionManager::new(url))
                .expect("pool")
        }

        /// Nothing lent, nothing leaked, and the server has as many
        /// sessions as the pool holds.
        fn assert_settled<M: pool_core::ManageConnection>(pool: &Pool<M>, db: &common::Db) {
            let state = pool.state();
            assert_eq!(state.active, 0, "{state:?}");
            assert!(pool.leaks().is_empty());
            db.expect_sessions(state.total);
        }

        #[test]
        fn diesel_code_runs_unchanged_on_a_loan() {
            let Some(db) = $fresh() else { return };
            let pool = pool(&db.url, 2);
            let mut conn = pool.get().unwrap();
            create_users(&mut conn);

            // `load` and `execute` take `&mut conn`, as with r2d2.
            #[derive(QueryableByName)]
            struct One {
                #[diesel(sql_type = diesel::sql_types::Integer)]
                one: i32,
            }
            let rows: Vec<One> = diesel::sql_query("SELECT 1 AS one")
                .load(&mut conn)
                .unwrap();
            assert_eq!(rows[0].one, 1);
            diesel::sql_query("SELECT 1").execute(&mut conn).unwrap();
            add_user(&mut conn, 1, "Ada").unwrap();

            // A transaction commits, a failed one rolls back, a nested one
            // is a savepoint.
            conn.transaction(|c| add_user(c, 2, "Grace")).unwrap();
            let failed = conn.transaction(|c| {
                add_user(c, 3, "Linus")?;
                Err::<(), _>(diesel::result::Error::RollbackTransaction)
            });
            assert!(failed.is_err());
            conn.transaction(|c| {
                let inner = c.transaction(|c| {
                    add_user(c, 4, "Ken")?;
                    Err::<(), _>(diesel::result::Error::RollbackTransaction)
                });
                assert!(inner.is_err());
                add_user(c, 5, "Barbara")
            })
            .unwrap();
            let names: Vec<String> = users::table
                .select(users::name)
                .order(users::id)
                .load(&mut conn)
                .unwrap();
            assert_eq!(names, ["Ada", "Grace", "Barbara"]);

            // An owned loan (r2d2's `PooledConnection<M>`) goes to another
            // thread.
            let mut owned: OwnedConnection<Manager> = pool.get_owned().unwrap();
            let count = std::thread::spawn(move || {
                users::table.count().get_result::<i64>(&mut owned).unwrap()
            })
            .join()
            .unwrap();
            assert_eq!(count, 3);
            drop(conn);

            // Healthy connections went back to the pool, not closed.
            assert_eq!(pool.metrics().closed.total(), 0);
            assert_settled(&pool, &db);
        }

        #[derive(Queryable, Identifiable, AsChangeset, Debug, PartialEq)]
        #[diesel(table_name = users)]
        struct User {
            id: i32,
            name: String,
        }

        #[test]
        fn save_changes_and_find_work_on_a_loan() {
            let Some(db) = $fresh() else { return };
            let pool = pool(&db.url, 1);
            let mut conn = pool.get().unwrap();
            create_users(&mut conn);
            add_user(&mut conn, 1, "Ada").unwrap();
            let mut user: User = users::table.find(1).first(&mut conn).unwrap();
            user.name = "Ada Lovelace".into();
            let saved: User = (&user).save_changes(&mut conn).unwrap();
            assert_eq!(saved, user);
            let name: String = users::table
                .find(1)
                .select(users::name)
                .first(&mut conn)
                .unwrap();
            assert_eq!(name, "Ada Lovelace");
            drop(conn);
            assert_settled(&pool, &db);
        }

        #[test]
        fn migrations_run_through_an_owned_loan() {
            let Some(db) = $fresh() else { return };
            let pool = pool(&db.url, 1);
            let mut conn = pool.get_owned().unwrap();
            let applied = conn.run_pending_migrations(MIGRATIONS).unwrap();
            assert_eq!(applied.len(), 1);
            assert!(!conn.has_pending_migration(MIGRATIONS).unwrap());
            add_user(&mut conn, 1, "Ada").unwrap();
            drop(conn);

            let mut conn = pool.get_owned().unwrap();
            assert_eq!(conn.applied_migrations().unwrap().len(), 1);
            assert_eq!(
                users::table.count().get_result::<i64>(&mut conn).unwrap(),
                1
            );
            drop(conn);
            assert_settled(&pool, &db);
        }

        #[test]
        fn a_loan_returned_inside_a_transaction_is_closed_not_reused() {
            let Some(db) = $fresh() else { return };
            let pool = pool(&db.url, 1);
            let mut conn = pool.get().unwrap();
            create_users(&mut conn);
            let first = session_id(&mut conn);
            // A transaction begun and never ended, as a failed COMMIT or an
            // early return past hand-written BEGIN leaves it.
            AnsiTransactionManager::begin_transaction(&mut *conn).unwrap();
            add_user(&mut conn, 1, "uncommitted").unwrap();
            drop(conn);
            assert_eq!(pool.metrics().closed.broken, 1);

            let mut conn = pool.get().unwrap();
            assert_ne!(
                session_id(&mut conn),
                first,
                "the broken connection was lent again"
            );
            // The open transaction died with its connection.
            assert_eq!(
                users::table.count().get_result::<i64>(&mut conn).unwrap(),
                0
            );
            conn.transaction(|c| add_user(c, 2, "committed")).unwrap();
            drop(conn);
            assert_eq!(pool.metrics().closed.broken, 1);
            assert_settled(&pool, &db);
        }

        #[test]
        fn a_broken_transaction_manager_is_closed_not_reused() {
            let Some(db) = $fresh() else { return };
            let pool = pool(&db.url, 1);
            let mut conn = pool.get().unwrap();
            let first = session_id(&mut conn);
            // What diesel records when a rollback fails (the connection
            // was lost in the middle of a transaction).
            AnsiTransactionManager::transaction_manager_status_mut(&mut *conn).set_in_error();
            drop(conn);
            assert_eq!(pool.metrics().closed.broken, 1);

            let mut conn = pool.get().unwrap();
            assert_ne!(
                session_id(&mut conn),
                first,
                "the broken connection was lent again"
            );
            conn.transaction(|c| diesel::sql_query("SELECT 1").execute(c))
                .unwrap();
            drop(conn);
            assert_settled(&pool, &db);
        }

        #[test]
        fn test_transactions_stay_on_their_connection_and_are_never_committed() {
            let Some(db) = $fresh() else { return };
            let plain = pool(&db.url, 1);
            create_users(&mut plain.get().unwrap());

            let manager = Customized::new(
                ConnectionManager::<$conn>::new(db.url.as_str()),
                TestCustomizer,
            );
            let testing = Pool::builder().max_size(1).build(manager).unwrap();
            let mut conn = testing.get().unwrap();
            let first = session_id(&mut conn);
            add_user(&mut conn, 1, "Ada").unwrap();
            drop(conn);
            // The loan came back inside its test transaction: not broken.
            let mut conn = testing.get().unwrap();
            assert_eq!(session_id(&mut conn), first);
            assert_eq!(
                users::table.count().get_result::<i64>(&mut conn).unwrap(),
                1
            );
            drop(conn);
            assert_eq!(testing.metrics().closed.total(), 0);
            assert_eq!(testing.state().active, 0);
            db.expect_sessions(testing.state().total + plain.state().total);
            drop(testing);

            // Never committed.
            let mut conn = plain.get().unwrap();
            assert_eq!(
                users::table.count().get_result::<i64>(&mut conn).unwrap(),
                0
            );
        }

        #[test]
        fn a_connection_the_server_ended_is_replaced_on_borrow() {
            let Some(db) = $fresh() else { return };
            let pool = Pool::builder()
                .max_size(1)
                .alive_bypass_window(Duration::ZERO)
                .build(ConnectionManager::<$conn>::new(db.url.as_str()))
                .unwrap();
            let mut conn = pool.get().unwrap();
            let first = session_id(&mut conn);
            drop(conn);
            if !db.kill_session(first) {
                // SQLite has no server to end a session: the healthy
                // connection passes its `SELECT 1` and is lent again. (The
                // pool's clock is coarse: a borrow in the same tick as the
                // return skips the check even with a zero window.)
                std::thread::sleep(Duration::from_millis(30));
                let mut conn = pool.get().unwrap();
                assert_eq!(session_id(&mut conn), first);
                drop(conn);
                assert_eq!(pool.metrics().closed.total(), 0);
                return;
            }
            db.expect_sessions(0);
            // The `SELECT 1` check on borrow finds it dead; the borrower
            // gets a fresh connection, not an error.
            let mut conn = pool.get().unwrap();
            assert_ne!(session_id(&mut conn), first);
            drop(conn);
            assert_eq!(pool.metrics().closed.failed_validation, 1);
            assert_settled(&pool, &db);
        }

        #[test]
        fn a_failed_connect_says_what_happened() {
            let Some(db) = $fresh() else { return };
            let err = Pool::builder()
                .max_size(1)
                .initialization_fail_timeout(Duration::from_millis(300))
                .build(ConnectionManager::<$conn>::new(db.bad_url.as_str()))
                .unwrap_err();
            // diesel's error is in the chain once, as our `Error`, saying
            // what failed and what to check.
            let mut ours = Vec::new();
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
            while let Some(e) = source {
                if let Some(e) = e.downcast_ref::<pool_core::diesel::Error>() {
                    ours.push(e);
                }
                source = e.source();
            }
            assert_eq!(ours.len(), 1, "{err:?}");
            assert!(matches!(
                ours[0],
                pool_core::diesel::Error::ConnectionError(_)
            ));
            let text = ours[0].to_string();
            assert!(text.starts_with("diesel could not connect: "), "{text}");
            assert!(text.contains("check the database URL"), "{text}");
        }
    };
}
