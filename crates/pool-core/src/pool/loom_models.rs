//! Loom models of the pool's own protocols, above the bag (`cargo xtask
//! loom`): the real `Pool` and `Inner` code, compiled with loom's atomics
//! and locks (`sync`), driven by a model manager, its creator and
//! housekeeper run by hand on model threads (`Pool::for_model` starts no
//! thread), and a clock that stands still unless a model moves it
//! (`clock::model`). A detached job (a background reset) is a model thread
//! of its own (`deadline::detach`).
//!
//! Each model states a promise a user relies on and checks it at the end of
//! every execution. What the models leave out: the thread cache is one per
//! OS thread, and loom runs a model's threads on one OS thread, so the model
//! threads share one cache (more interleavings than real threads can have,
//! since every claim still goes through the seat's CAS); `get()`'s timed
//! waits are not modelled here (the bag's models cover the waits).

use std::sync::Arc as StdArc;
use std::time::Duration;

use crate::clock;
use crate::sync::{thread, AtomicBool, AtomicUsize, Ordering};
use crate::{Builder, Config, ManageConnection};

use super::creator::{create_one, Jitter};
use super::housekeeper::housekeep;
use super::Pool;

/// What the model manager saw, in loom atomics.
#[derive(Default)]
struct Seen {
    /// Connections opened (a connection's value is its number, from 1).
    opened: AtomicUsize,
    /// Connections closed by the pool (`ManageConnection::close`).
    closed: AtomicUsize,
    /// Connects that began before `mark` was set.
    before_mark: AtomicUsize,
    /// Set by a model just before the step whose promise it checks.
    mark: AtomicBool,
    /// The most sessions open at once, as the server would count them.
    peak: AtomicUsize,
    /// Which connections were closed (a plain lock: loom runs one model
    /// thread at a time, and nothing under it is a loom step).
    closed_ids: std::sync::Mutex<Vec<usize>>,
}

impl Seen {
    fn was_closed(&self, conn: usize) -> bool {
        self.closed_ids.lock().unwrap().contains(&conn)
    }
}

/// A manager whose connects and closes always work, and count; with a
/// `connect_limit` when `.1` is set.
struct Model(StdArc<Seen>, Option<Duration>);

impl ManageConnection for Model {
    type Connection = usize;
    type Error = std::io::Error;

    fn connect(&self) -> Result<usize, std::io::Error> {
        if !self.0.mark.load(Ordering::SeqCst) {
            self.0.before_mark.fetch_add(1, Ordering::SeqCst);
        }
        let n = self.0.opened.fetch_add(1, Ordering::SeqCst) + 1;
        let open = n - self.0.closed.load(Ordering::SeqCst);
        self.0.peak.fetch_max(open, Ordering::SeqCst);
        Ok(n)
    }

    fn connect_limit(&self) -> Option<Duration> {
        self.1
    }

    fn is_valid(&self, _: &mut usize, _: Duration) -> Result<(), std::io::Error> {
        Ok(())
    }

    fn has_broken(&self, _: &mut usize) -> bool {
        false
    }

    fn close(&self, conn: usize) {
        self.0.closed_ids.lock().unwrap().push(conn);
        self.0.closed.fetch_add(1, Ordering::SeqCst);
    }
}

/// Runs a model. The pool's paths take many more atomic steps than the
/// bag's alone (stamps, counters, the housekeeper's loop over the seats),
/// hence a larger branch budget than loom's default of 1000; the
/// preemption bound comes from `LOOM_MAX_PREEMPTIONS` (`cargo xtask loom`).
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.max_branches = 100_000;
    builder.check(f);
}

/// The model clock's time at the start of every execution.
const T0: clock::Millis = 1_000_000;

/// A pool of `max` seats with `open` connections already open and idle,
/// opened by the creator's own code on this thread.
fn pool_with(builder: Builder, open: usize) -> (Pool<Model>, StdArc<Seen>) {
    pool_limited(builder, open, None)
}

/// [`pool_with`], the manager's `connect_limit` set to `limit`.
fn pool_limited(
    builder: Builder,
    open: usize,
    limit: Option<Duration>,
) -> (Pool<Model>, StdArc<Seen>) {
    clock::model::set(T0);
    let seen = StdArc::new(Seen::default());
    let config: Config = builder.min_idle(Some(0)).config().clone();
    let pool = Pool::for_model(config, Model(seen.clone(), limit));
    for _ in 0..open {
        create(&pool);
    }
    (pool, seen)
}

/// One run of the creator's connect-and-publish step.
fn create(pool: &Pool<Model>) {
    let failed = create_one(&pool.handle.inner, &mut Jitter::new(), &mut None);
    assert!(failed.is_none(), "the model manager's connects succeed");
}

fn open_now(seen: &Seen) -> usize {
    seen.opened.load(Ordering::SeqCst) - seen.closed.load(Ordering::SeqCst)
}

/// `soft_evict_all` against the creator publishing a connection it began
/// opening earlier (issue 17's race 1: the publish erased the eviction
/// mark). Promise: every connection opened or being opened when
/// `soft_evict_all` is called is closed, never lent afterwards.
#[test]
fn loom_soft_evict_all_closes_a_connection_being_opened() {
    model(|| {
        let (pool, seen) = pool_with(Builder::new().max_size(1), 0);
        let creator = {
            let pool = pool.clone();
            thread::spawn(move || create(&pool))
        };
        seen.mark.store(true, Ordering::SeqCst);
        pool.soft_evict_all();
        creator.join().unwrap();
        let before = seen.before_mark.load(Ordering::SeqCst);
        if before > 0 {
            assert_eq!(
                seen.closed.load(Ordering::SeqCst),
                before,
                "a connection opened before soft_evict_all survived it"
            );
            assert_eq!(pool.state().idle, 0);
        }
        assert_eq!(pool.state().total as usize, open_now(&seen));
    });
}

/// `close()` against a background reset of a connection its borrower gave
/// back just before (the CI failure fixed in stop 22: `close()` returned
/// while a reset job was about to make the connection idle). Promise: a
/// connection given back before `close()` is called is closed when
/// `close()` returns.
#[test]
fn loom_close_waits_for_a_background_reset() {
    model(|| {
        let (pool, seen) = pool_with(Builder::new().max_size(1).reset_in_background(true), 1);
        let loan = pool.get_owned().expect("an idle connection");
        let given_back = StdArc::new(AtomicBool::new(false));
        let borrower = {
            let given_back = given_back.clone();
            thread::spawn(move || {
                drop(loan);
                given_back.store(true, Ordering::SeqCst);
            })
        };
        let before = given_back.load(Ordering::SeqCst);
        pool.close();
        if before {
            assert_eq!(
                open_now(&seen),
                0,
                "close() returned with a given-back connection still open"
            );
            assert_eq!(pool.state().total, 0);
        }
        borrower.join().unwrap();
    });
}

/// `resize` shrinking the pool against a borrower giving back the
/// connection of the seat that no longer fits, while another connection
/// stays lent. Promise: once both are done, the pool holds no more
/// connections than its new size (the lent one), without waiting for the
/// lent one to come back.
#[test]
fn loom_resize_down_against_a_return() {
    model(|| {
        let (pool, seen) = pool_with(Builder::new().max_size(2), 2);
        let kept = pool.get_owned().expect("an idle connection");
        let given_back = pool.get_owned().expect("a second idle connection");
        let borrower = thread::spawn(move || drop(given_back));
        pool.resize(1).expect("a valid size");
        borrower.join().unwrap();
        assert_eq!(
            open_now(&seen),
            1,
            "after resize(1) and a return, only the lent connection may stay open"
        );
        assert_eq!(pool.state().total as usize, open_now(&seen));
        drop(kept);
        assert_eq!(open_now(&seen), 1);
    });
}

/// The creator giving up on a connect past the manager's `connect_limit`
/// and trying again, against that connect finishing late on its own thread
/// (one CAS decides who owns the result; the seat goes to the late thread,
/// which closes its connection and frees the seat). Promise: the server
/// never sees more sessions than `max_size`, and a late connection is
/// closed, never lent.
#[test]
fn loom_a_late_connect_never_exceeds_max_size() {
    model(|| {
        let (pool, seen) = pool_limited(
            Builder::new().max_size(1),
            0,
            Some(Duration::from_millis(100)),
        );
        let inner = &pool.handle.inner;
        // The first attempt may be given up (the model's wait "times out"
        // whenever the connect has not answered yet), then the creator
        // tries again at once.
        let _ = create_one(inner, &mut Jitter::new(), &mut None);
        let _ = create_one(inner, &mut Jitter::new(), &mut None);
        // Let a late connect finish.
        while inner.abandoned.load(Ordering::SeqCst) > 0 {
            thread::yield_now();
        }
        assert!(
            seen.peak.load(Ordering::SeqCst) <= 1,
            "two sessions open at once with max_size 1"
        );
        let state = pool.state();
        assert_eq!(state.total as usize, open_now(&seen));
        if let Ok(conn) = pool.try_get() {
            assert!(!seen.was_closed(*conn), "a closed connection was lent");
        };
    });
}

/// A borrower detaching its connection against `close()`. Promise: the
/// pool forgets a detached connection at once (never closes it: it is the
/// caller's now) and counts nothing twice.
#[test]
fn loom_detach_against_close() {
    model(|| {
        let (pool, seen) = pool_with(Builder::new().max_size(1), 1);
        let loan = pool.get_owned().expect("an idle connection");
        let borrower = thread::spawn(move || loan.detach());
        pool.close();
        let conn = borrower.join().unwrap();
        assert_eq!(conn, 1);
        assert_eq!(
            seen.closed.load(Ordering::SeqCst),
            0,
            "the pool closed a detached connection"
        );
        assert_eq!(pool.state().total, 0);
    });
}

/// The housekeeper retiring an idle connection past `idle_timeout` against
/// a borrower taking it (the borrow's fast path, then its scan). Promise:
/// a connection is lent or closed, never both.
#[test]
fn loom_idle_retirement_against_a_borrow() {
    model(|| {
        let (pool, seen) = pool_with(
            Builder::new()
                .max_size(1)
                .idle_timeout(Some(Duration::from_millis(100))),
            1,
        );
        clock::model::set(T0 + 500); // idle past its timeout
        let borrower = {
            let (pool, seen) = (pool.clone(), seen.clone());
            thread::spawn(move || {
                if let Ok(conn) = pool.try_get() {
                    assert!(!seen.was_closed(*conn), "a closed connection was lent");
                    true
                } else {
                    false
                }
            })
        };
        housekeep(&pool.handle.inner);
        let borrowed = borrower.join().unwrap();
        let closed = seen.closed.load(Ordering::SeqCst);
        assert!(
            borrowed || closed == 1,
            "the connection was neither lent nor retired"
        );
        assert_eq!(pool.state().total as usize, open_now(&seen));
    });
}

/// `close()` against the creator publishing a connection it was opening.
/// Promise: once `close()` has returned and the connect has ended, no
/// connection stays open (`close()` joins the creator thread; here the
/// creator's step runs on a model thread, joined afterwards).
#[test]
fn loom_close_against_the_creator_publishing() {
    model(|| {
        let (pool, seen) = pool_with(Builder::new().max_size(1), 0);
        let creator = {
            let pool = pool.clone();
            thread::spawn(move || create(&pool))
        };
        pool.close();
        creator.join().unwrap();
        assert_eq!(open_now(&seen), 0, "a connection outlived close()");
        assert_eq!(pool.state().total, 0);
    });
}

/// `retain` rejecting a lent connection against its borrower giving it
/// back. Promise: a connection `retain` rejected is closed once both are
/// done, whichever of its two paths (retain's sweep, or the return's
/// check) gets to it.
#[test]
fn loom_retain_against_a_return() {
    model(|| {
        let (pool, seen) = pool_with(Builder::new().max_size(1), 1);
        let loan = pool.get_owned().expect("an idle connection");
        let borrower = thread::spawn(move || drop(loan));
        let rejected = pool.retain(|_| false);
        borrower.join().unwrap();
        assert_eq!(rejected, 1);
        assert_eq!(
            open_now(&seen),
            0,
            "a connection retain rejected stayed open"
        );
        assert_eq!(pool.state().total, 0);
    });
}
