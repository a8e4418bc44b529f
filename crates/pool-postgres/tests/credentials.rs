//! Credentials that change without a rebuild (`PostgresManager::credentials`),
//! on a throwaway server whose roles log in with SCRAM passwords (pool-testkit
//! writes a `pg_hba.conf` with `scram-sha-256` for every role but the
//! superuser).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use common::{superuser, unique};
use pool_core::{Credentials, CredentialsError, Pool};
use pool_postgres::PostgresManager;
use pool_testkit::{PgServer, PG_DATABASE, PG_PASSWORD};

type Provider = Arc<RwLock<Result<Credentials, String>>>;

fn manager(pg: &PgServer, secret: &Provider) -> PostgresManager<postgres::NoTls> {
    let (manager, _) = PostgresManager::from_url(&pg.url()).unwrap();
    let secret = secret.clone();
    manager.credentials(move || -> Result<Credentials, CredentialsError> {
        secret.read().unwrap().clone().map_err(Into::into)
    })
}

fn backend_pid(conn: &mut pool_postgres::PgConnection) -> i32 {
    conn.query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0)
}

#[test]
fn a_rotated_password_is_used_after_soft_evict_without_a_rebuild() {
    pool_testkit::require_or_skip!(PgServer::binaries_available());
    let pg = PgServer::start().unwrap();
    let mut su = superuser(&pg);
    let role = unique("rotating");
    su.batch_execute(&format!(
        "CREATE ROLE {role} LOGIN PASSWORD 'first-pw'; \
         GRANT ALL ON DATABASE {PG_DATABASE} TO {role}"
    ))
    .unwrap();
    let secret: Provider = Arc::new(RwLock::new(Ok(Credentials::new(&role, "first-pw"))));
    let pool = Pool::builder()
        .max_size(3)
        .min_idle(Some(3))
        .connection_timeout(Duration::from_secs(10))
        .build(manager(&pg, &secret))
        .unwrap();
    let user: String = pool
        .get()
        .unwrap()
        .query_one("SELECT current_user::text", &[])
        .unwrap()
        .get(0);
    assert_eq!(user, role, "the provider's user logs in, not the URL's");

    // Borrowers keep working throughout; none may fail.
    let stop = AtomicBool::new(false);
    let borrows = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let mut conn = pool.get().expect("a borrow failed during the rotation");
                    conn.simple_query("SELECT 1").expect("a query failed");
                    borrows.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(2));
                }
            });
        }
        std::thread::sleep(Duration::from_millis(100));
        let old_pids: Vec<i32> = {
            let mut rows = su
                .query(
                    "SELECT pid FROM pg_stat_activity WHERE usename = $1",
                    &[&role.as_str()],
                )
                .unwrap();
            rows.drain(..).map(|r| r.get(0)).collect()
        };
        assert_eq!(old_pids.len(), 3, "{old_pids:?}");

        // Rotate on the server, then in the provider, then retire the old
        // connections.
        su.batch_execute(&format!("ALTER ROLE {role} PASSWORD 'second-pw'"))
            .unwrap();
        *secret.write().unwrap() = Ok(Credentials::new(&role, "second-pw"));
        pool.soft_evict_all();

        // Every connection the pool holds is new (opened with the new
        // password: the old one is refused now).
        let renewed = common::wait_until(Duration::from_secs(10), || {
            let pids: Vec<i32> = su
                .query(
                    "SELECT pid FROM pg_stat_activity WHERE usename = $1",
                    &[&role.as_str()],
                )
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            !pids.is_empty() && pids.iter().all(|p| !old_pids.contains(p))
        });
        assert!(renewed, "old connections are still open");
        let mut conn = pool.get().unwrap();
        assert!(!old_pids.contains(&backend_pid(&mut conn)));
        drop(conn);
        std::thread::sleep(Duration::from_millis(100));
        stop.store(true, Ordering::Relaxed);
    });
    assert!(borrows.load(Ordering::Relaxed) > 10);
    let metrics = pool.metrics();
    assert_eq!(
        metrics.connection_errors, 0,
        "no connect failed: {metrics:?}"
    );
    // The old password is really gone.
    let old = format!(
        "postgres://{role}:first-pw@127.0.0.1:{}/{PG_DATABASE}",
        pg.port()
    );
    assert!(postgres::Client::connect(&old, postgres::NoTls).is_err());
}

#[test]
fn a_failing_provider_is_a_clear_connect_error_without_the_secret() {
    pool_testkit::require_or_skip!(PgServer::binaries_available());
    let pg = PgServer::start().unwrap();
    let secret: Provider = Arc::new(RwLock::new(Err(
        "the vault is sealed; unseal it and retry".to_owned()
    )));
    let err = Pool::builder()
        .initialization_fail_timeout(Duration::from_millis(200))
        .connection_timeout(Duration::from_millis(500))
        .build(manager(&pg, &secret))
        .unwrap_err();
    let err = pool_core::ErrorChain(&err).to_string();
    assert!(err.contains("the credentials provider failed"), "{err}");
    assert_eq!(err.matches("the vault is sealed").count(), 1, "{err}");
    assert!(!err.contains(PG_PASSWORD), "{err}");

    // A pool whose provider starts failing reports it on `get`, and
    // recovers when the provider does.
    *secret.write().unwrap() = Ok(Credentials::password_only(PG_PASSWORD));
    let pool = Pool::builder()
        .max_size(1)
        .connection_timeout(Duration::from_secs(2))
        .build(manager(&pg, &secret))
        .unwrap();
    *secret.write().unwrap() = Err("token expired at 12:00 and could not be renewed".into());
    pool.soft_evict_all();
    let err = pool.get().unwrap_err();
    let err = pool_core::ErrorChain(&err).to_string();
    assert_eq!(err.matches("token expired").count(), 1, "{err}");
    assert!(!err.contains(PG_PASSWORD), "{err}");
    *secret.write().unwrap() = Ok(Credentials::password_only(PG_PASSWORD));
    let mut conn = pool.get().expect("recovers once the provider does");
    conn.simple_query("SELECT 1").unwrap();
}
