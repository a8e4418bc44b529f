//! Parallel connects (`Builder::parallel_connects`) that the pool gives up
//! on (`ManageConnection::connect_limit`) while the server is frozen keep
//! their seats like any given-up connect: the server never sees more than
//! `max_size` sessions, and a refill during the freeze starts at most one
//! connect per seat.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use pool_core::{ManageConnection, Pool};

/// Logins hang while `frozen` and complete when it thaws; open sessions
/// counted.
#[derive(Default)]
struct Sessions {
    frozen: AtomicBool,
    open: AtomicUsize,
    peak: AtomicUsize,
    connects: AtomicUsize,
}

struct Session(Arc<Sessions>);

impl Drop for Session {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

struct LateLogins(Arc<Sessions>);

impl ManageConnection for LateLogins {
    type Connection = Session;
    type Error = std::io::Error;

    fn connect(&self) -> Result<Session, std::io::Error> {
        self.0.connects.fetch_add(1, Ordering::SeqCst);
        thread::sleep(Duration::from_millis(5));
        while self.0.frozen.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(2));
        }
        let open = self.0.open.fetch_add(1, Ordering::SeqCst) + 1;
        self.0.peak.fetch_max(open, Ordering::SeqCst);
        Ok(Session(self.0.clone()))
    }

    fn is_valid(&self, _: &mut Session, _: Duration) -> Result<(), std::io::Error> {
        Ok(())
    }

    fn has_broken(&self, _: &mut Session) -> bool {
        false
    }

    fn connect_limit(&self) -> Option<Duration> {
        Some(Duration::from_millis(100))
    }
}

fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        if cond() {
            return true;
        }
        thread::sleep(Duration::from_millis(5));
    }
    cond()
}

#[test]
fn parallel_connects_given_up_during_a_freeze_stay_within_max_size() {
    const MAX: u32 = 6;
    let server = Arc::new(Sessions::default());
    let pool = Pool::builder()
        .max_size(MAX)
        .parallel_connects(MAX)
        .connection_timeout(Duration::from_millis(250))
        .build(LateLogins(server.clone()))
        .unwrap();
    assert!(eventually(|| pool.state().idle == MAX));
    // The server freezes, and the pool loses every connection: a real
    // shortfall, refilled in parallel, every connect of which hangs.
    server.frozen.store(true, Ordering::SeqCst);
    let before = server.connects.load(Ordering::SeqCst);
    pool.soft_evict_all();
    let start = Instant::now();
    thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                while start.elapsed() < Duration::from_secs(1) {
                    let _ = pool.get();
                }
            });
        }
    });
    let during = server.connects.load(Ordering::SeqCst) - before;
    println!("{during} connects started during the freeze");
    assert!(
        during <= MAX as usize,
        "{during} connects started during the freeze for a pool of max_size {MAX}"
    );
    server.frozen.store(false, Ordering::SeqCst);
    let conn = pool.get_timeout(Duration::from_secs(5)).unwrap();
    drop(conn);
    assert!(eventually(|| pool.state().idle == MAX));
    assert!(
        server.peak.load(Ordering::SeqCst) <= MAX as usize,
        "the server saw {} sessions at once for max_size {MAX}",
        server.peak.load(Ordering::SeqCst)
    );
    assert!(pool.metrics().late_connects >= 1, "{:?}", pool.metrics());
    drop(pool);
    assert!(eventually(|| server.open.load(Ordering::SeqCst) == 0));
}
