//! Checkout and checkin hooks (`CustomizeConnection::on_checkout` /
//! `on_checkin`, through `Customized`): they run on every borrow and every
//! return, see the connection, its facts and its extensions, and can veto.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{Conn, TestManager};
use pool_core::{CustomizeConnection, Customized, HookContext, Pool};

/// Hooks driven by switches, counting their calls.
#[derive(Default)]
struct Hooks {
    checkouts: AtomicUsize,
    checkins: AtomicUsize,
    /// Vetoes this many checkouts to come.
    veto_checkouts: AtomicUsize,
    veto_checkin: AtomicBool,
    panic_checkout: AtomicBool,
    /// The hook sleeps this long (milliseconds) before vetoing.
    veto_after_ms: AtomicU64,
    /// `uses` seen by the last checkout.
    last_uses: AtomicU64,
    /// Check-ins that found the borrower's mess (before the reset).
    saw_dirty: AtomicUsize,
    panic_checkin: AtomicBool,
}

impl CustomizeConnection<Conn, std::io::Error> for Arc<Hooks> {
    fn on_checkout(&self, conn: &mut Conn, cx: &mut HookContext<'_>) -> bool {
        self.checkouts.fetch_add(1, Ordering::SeqCst);
        assert_eq!(cx.id(), cx.info().id);
        assert!(cx.info().lent);
        self.last_uses.store(cx.info().uses, Ordering::SeqCst);
        *cx.extensions_mut().get_or_insert_with(|| 0u32) += 1;
        conn.touch();
        if self.panic_checkout.load(Ordering::SeqCst) {
            panic!("checkout hook panicked");
        }
        let ms = self.veto_after_ms.load(Ordering::SeqCst);
        if ms > 0 {
            std::thread::sleep(Duration::from_millis(ms));
            return false;
        }
        self.veto_checkouts
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_err()
    }

    fn on_checkin(&self, conn: &mut Conn, _cx: &mut HookContext<'_>) -> bool {
        self.checkins.fetch_add(1, Ordering::SeqCst);
        if conn.dirty {
            self.saw_dirty.fetch_add(1, Ordering::SeqCst);
        }
        conn.dirty = false; // cleanup
        if self.panic_checkin.load(Ordering::SeqCst) {
            panic!("checkin hook panicked");
        }
        !self.veto_checkin.load(Ordering::SeqCst)
    }
}

type HookedPool = Pool<Customized<TestManager, Arc<Hooks>>>;

fn pool(max_size: u32) -> (HookedPool, Arc<Hooks>, TestManager) {
    let m = TestManager::new();
    let hooks = Arc::new(Hooks::default());
    let pool = Pool::builder()
        .max_size(max_size)
        .connection_timeout(Duration::from_secs(5))
        .build(Customized::new(m.clone(), hooks.clone()))
        .unwrap();
    (pool, hooks, m)
}

#[test]
fn hooks_run_on_every_borrow_and_return_of_the_same_connection() {
    let (pool, hooks, _m) = pool(1);
    for _ in 0..5 {
        drop(pool.get().unwrap());
    }
    assert_eq!(hooks.checkouts.load(Ordering::SeqCst), 5);
    assert_eq!(hooks.checkins.load(Ordering::SeqCst), 5);
    // The hook saw the facts of this loan, and its data stayed with the
    // connection.
    assert_eq!(hooks.last_uses.load(Ordering::SeqCst), 5);
    let conn = pool.get().unwrap();
    assert_eq!(conn.extensions().get::<u32>(), Some(&6));
}

#[test]
fn a_vetoed_checkout_closes_the_connection_and_lends_another() {
    let (pool, hooks, m) = pool(1);
    let first = pool.get().unwrap().id();
    hooks.veto_checkouts.store(1, Ordering::SeqCst);
    let conn = pool.get().unwrap();
    assert_ne!(conn.id(), first, "the vetoed connection was lent");
    assert_eq!(pool.metrics().closed.rejected, 1);
    assert!(common::eventually(Duration::from_secs(5), || m
        .db
        .closed
        .load(Ordering::SeqCst)
        == 1));
}

#[test]
fn a_panicking_checkout_hook_counts_as_a_veto() {
    let (pool, hooks, _m) = pool(1);
    let first = pool.get().unwrap().id();
    hooks.panic_checkout.store(true, Ordering::SeqCst);
    let err = pool.get_timeout(Duration::from_millis(300)).unwrap_err();
    assert!(err.is_timeout(), "{err}");
    hooks.panic_checkout.store(false, Ordering::SeqCst);
    let conn = pool.get().unwrap();
    assert_ne!(conn.id(), first);
    assert!(pool.metrics().closed.rejected >= 1);
}

#[test]
fn vetoes_keep_the_borrowers_one_deadline() {
    let (pool, hooks, _m) = pool(1);
    drop(pool.get().unwrap()); // in this thread's cache: the fast path next
    let before = hooks.checkouts.load(Ordering::SeqCst);
    // Each checkout takes 400 ms and is vetoed. Within a 700 ms deadline
    // that is two tries (the fast path's, then one more at 400 ms that
    // ends past the deadline); a slow path that started its own clock after
    // the first veto would try a third time. (The margins leave room for a
    // loaded machine's late wake-ups: a 400/300 ms pair failed now and then
    // with three busy loops beside the test.)
    hooks.veto_after_ms.store(400, Ordering::SeqCst);
    let err = pool.get_timeout(Duration::from_millis(700)).unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert_eq!(hooks.checkouts.load(Ordering::SeqCst) - before, 2);
}

#[test]
fn a_checkin_hook_cleans_up_before_the_next_loan() {
    let (pool, hooks, _m) = pool(1);
    pool.get().unwrap().dirty = true;
    assert!(!pool.get().unwrap().dirty);
    assert_eq!(hooks.checkins.load(Ordering::SeqCst), 2);
    // It ran before the manager's reset (which also cleans).
    assert_eq!(hooks.saw_dirty.load(Ordering::SeqCst), 1);
}

#[test]
fn a_vetoed_checkin_closes_the_connection_instead_of_reusing_it() {
    let (pool, hooks, m) = pool(1);
    let first = pool.get().unwrap().id();
    hooks.veto_checkin.store(true, Ordering::SeqCst);
    drop(pool.get().unwrap());
    // Closed on return, on the returning thread.
    assert_eq!(pool.metrics().closed.rejected, 1);
    assert_eq!(m.db.closed.load(Ordering::SeqCst), 1);
    hooks.veto_checkin.store(false, Ordering::SeqCst);
    assert_ne!(pool.get().unwrap().id(), first);
}

#[test]
fn no_checkin_hook_for_a_connection_marked_broken() {
    let (pool, hooks, _m) = pool(1);
    let mut conn = pool.get().unwrap();
    conn.mark_broken();
    drop(conn);
    assert_eq!(hooks.checkins.load(Ordering::SeqCst), 0);
    assert_eq!(pool.metrics().closed.broken, 1);
}

#[test]
fn a_panicking_checkin_hook_closes_the_connection() {
    let (pool, hooks, m) = pool(1);
    hooks.panic_checkin.store(true, Ordering::SeqCst);
    drop(pool.get().unwrap());
    assert_eq!(pool.metrics().closed.rejected, 1);
    assert_eq!(m.db.closed.load(Ordering::SeqCst), 1);
}

#[test]
fn no_checkin_hook_for_a_connection_dropped_during_a_panic() {
    let (pool, hooks, _m) = pool(1);
    let p = pool.clone();
    let panicked = std::thread::spawn(move || {
        let _conn = p.get().unwrap();
        panic!("borrower panics holding its connection");
    })
    .join();
    assert!(panicked.is_err());
    assert_eq!(hooks.checkins.load(Ordering::SeqCst), 0);
    assert_eq!(pool.metrics().closed.broken, 1);
}

/// A manager with settings of its own, to check that `Customized` passes
/// them on.
struct Settings;

impl pool_core::ManageConnection for Settings {
    type Connection = ();
    type Error = std::io::Error;
    fn connect(&self) -> Result<(), std::io::Error> {
        Ok(())
    }
    fn is_valid(&self, _: &mut (), _: Duration) -> Result<(), std::io::Error> {
        Ok(())
    }
    fn has_broken(&self, _: &mut ()) -> bool {
        false
    }
    fn connect_limit(&self) -> Option<Duration> {
        Some(Duration::from_secs(3))
    }
    fn classify_connect_error(&self, _: &std::io::Error) -> pool_core::ConnectFailure {
        pool_core::ConnectFailure::Busy
    }
    fn is_broken_error(&self, _: &(dyn std::error::Error + 'static)) -> bool {
        true
    }
}

struct NoHooks;
impl CustomizeConnection<(), std::io::Error> for NoHooks {}

#[test]
fn customized_passes_the_managers_own_settings_on() {
    use pool_core::ManageConnection;
    let m = Customized::new(Settings, NoHooks);
    let err = std::io::Error::other("x");
    assert_eq!(m.connect_limit(), Some(Duration::from_secs(3)));
    assert_eq!(
        m.classify_connect_error(&err),
        pool_core::ConnectFailure::Busy
    );
    assert!(m.is_broken_error(&err));
}
