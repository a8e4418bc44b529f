//! Credentials that change without a rebuild (`MysqlManager::credentials`),
//! on a throwaway MariaDB server whose test users log in with passwords.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use common::{own_user, root, unique};
use mysql::prelude::Queryable;
use pool_core::{Credentials, CredentialsError, Pool};
use pool_mysql::MysqlManager;
use pool_testkit::{MariaDbServer, MARIADB_DATABASE, MARIADB_PASSWORD};

type Provider = Arc<RwLock<Result<Credentials, String>>>;

fn manager(url: &str, secret: &Provider) -> MysqlManager {
    let (manager, _) = MysqlManager::from_url(url).unwrap();
    let secret = secret.clone();
    manager.credentials(move || -> Result<Credentials, CredentialsError> {
        secret.read().unwrap().clone().map_err(Into::into)
    })
}

fn ids_of(admin: &mut mysql::Conn, user: &str) -> Vec<u64> {
    admin
        .exec_map(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ?",
            (user,),
            |id: u64| id,
        )
        .unwrap()
}

#[test]
fn a_rotated_password_is_used_after_soft_evict_without_a_rebuild() {
    pool_testkit::require_or_skip!(MariaDbServer::binaries_available());
    let db = MariaDbServer::start().unwrap();
    let mut admin = root(&db);
    let user = unique("rotating");
    // The URL names another user and password: the provider's win.
    own_user(&db, &mut admin, &user);
    let secret: Provider = Arc::new(RwLock::new(Ok(Credentials::new(
        &user,
        format!("pw_{user}"),
    ))));
    let pool = Pool::builder()
        .max_size(3)
        .min_idle(Some(3))
        .connection_timeout(Duration::from_secs(10))
        .build(manager(&db.url(), &secret))
        .unwrap();
    let current: String = pool
        .get()
        .unwrap()
        .query_first("SELECT SUBSTRING_INDEX(CURRENT_USER(), '@', 1)")
        .unwrap()
        .unwrap();
    assert_eq!(current, user, "the provider's user logs in, not the URL's");

    let stop = AtomicBool::new(false);
    let borrows = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let mut conn = pool.get().expect("a borrow failed during the rotation");
                    conn.query_drop("SELECT 1").expect("a query failed");
                    borrows.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(2));
                }
            });
        }
        std::thread::sleep(Duration::from_millis(100));
        let old_ids = ids_of(&mut admin, &user);
        assert_eq!(old_ids.len(), 3, "{old_ids:?}");

        admin
            .query_drop(format!("ALTER USER '{user}'@'%' IDENTIFIED BY 'second-pw'"))
            .unwrap();
        *secret.write().unwrap() = Ok(Credentials::new(&user, "second-pw"));
        pool.soft_evict_all();

        let renewed = common::wait_until(Duration::from_secs(10), || {
            let ids = ids_of(&mut admin, &user);
            !ids.is_empty() && ids.iter().all(|id| !old_ids.contains(id))
        });
        assert!(renewed, "old connections are still open");
        std::thread::sleep(Duration::from_millis(100));
        stop.store(true, Ordering::Relaxed);
    });
    assert!(borrows.load(Ordering::Relaxed) > 10);
    let metrics = pool.metrics();
    assert_eq!(
        metrics.connection_errors, 0,
        "no connect failed: {metrics:?}"
    );
    let old = format!(
        "mysql://{user}:pw_{user}@127.0.0.1:{}/{MARIADB_DATABASE}",
        db.port()
    );
    assert!(
        mysql::Conn::new(mysql::Opts::from_url(&old).unwrap()).is_err(),
        "the old password still works"
    );
}

#[test]
fn a_failing_provider_is_a_clear_connect_error_without_the_secret() {
    pool_testkit::require_or_skip!(MariaDbServer::binaries_available());
    let db = MariaDbServer::start().unwrap();
    let secret: Provider = Arc::new(RwLock::new(Err(
        "the vault is sealed; unseal it and retry".to_owned()
    )));
    let err = Pool::builder()
        .initialization_fail_timeout(Duration::from_millis(200))
        .connection_timeout(Duration::from_millis(500))
        .build(manager(&db.url(), &secret))
        .unwrap_err();
    let err = pool_core::ErrorChain(&err).to_string();
    assert!(err.contains("the credentials provider failed"), "{err}");
    assert_eq!(err.matches("the vault is sealed").count(), 1, "{err}");
    assert!(!err.contains(MARIADB_PASSWORD), "{err}");

    *secret.write().unwrap() = Ok(Credentials::password_only(MARIADB_PASSWORD));
    let pool = Pool::builder()
        .max_size(1)
        .connection_timeout(Duration::from_secs(2))
        .build(manager(&db.url(), &secret))
        .unwrap();
    *secret.write().unwrap() = Err("token expired at 12:00 and could not be renewed".into());
    pool.soft_evict_all();
    let err = pool.get().unwrap_err();
    let err = pool_core::ErrorChain(&err).to_string();
    assert_eq!(err.matches("token expired").count(), 1, "{err}");
    assert!(!err.contains(MARIADB_PASSWORD), "{err}");
    *secret.write().unwrap() = Ok(Credentials::password_only(MARIADB_PASSWORD));
    let mut conn = pool.get().expect("recovers once the provider does");
    conn.query_drop("SELECT 1").unwrap();
}
