//! Adaptive sizing (`Builder::adaptive_size`) from the user's side, on the
//! simulated database: under a load that steps up the pool grows toward its
//! ceiling, never beyond it nor beyond the server's share; under a steady
//! load it holds its size (no flapping); when the load goes away it shrinks
//! back to its floor; every change is logged and counted. With adaptive
//! sizing off, the size never moves. Bad settings fail `build` with an error
//! naming them. Time bounds are generous: they only stop a hung test.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use pool_core::{AdaptiveSize, Error, Pool};
use pool_sim::{SimDb, SimManager};

/// Captures the pool's `info` lines about resizing.
struct Capture(Mutex<Vec<String>>);

impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Info
    }
    fn log(&self, record: &log::Record<'_>) {
        let line = record.args().to_string();
        if line.contains("resized from") {
            if let Some(name) = line.split('"').nth(1) {
                CHANGED_AT
                    .lock()
                    .unwrap()
                    .push((name.to_owned(), Instant::now()));
            }
            self.0.lock().unwrap().push(line);
        }
    }
    fn flush(&self) {}
}

static LOG: Capture = Capture(Mutex::new(Vec::new()));
/// When each pool logged a change: (pool, when).
static CHANGED_AT: Mutex<Vec<(String, Instant)>> = Mutex::new(Vec::new());

fn capture_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        log::set_logger(&LOG).unwrap();
        log::set_max_level(log::LevelFilter::Info);
    });
}

/// The resize lines logged for the pool named `name`.
fn resize_lines(name: &str) -> Vec<String> {
    let prefix = format!("pool \"{name}\":");
    LOG.0
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with(&prefix))
        .cloned()
        .collect()
}

/// Short windows, so that the test runs in seconds.
fn sizing(floor: u32, ceiling: u32) -> AdaptiveSize {
    let mut s = AdaptiveSize::new(floor, ceiling);
    s.window = Duration::from_millis(150);
    s.cool_down = Duration::from_millis(150);
    s.target_wait = Duration::from_millis(1);
    s.step = 2;
    s
}

fn pool(db: &SimDb, name: &str, max_size: u32, sizing: AdaptiveSize) -> Pool<SimManager> {
    Pool::builder()
        .name(name)
        .max_size(max_size)
        .connection_timeout(Duration::from_secs(10))
        .adaptive_size(sizing)
        .build(db.manager())
        .unwrap()
}

fn db() -> SimDb {
    SimDb::builder()
        .connect_latency(Duration::from_millis(2))
        .build()
}

/// `threads` borrowers, each holding a connection for `hold` in a loop
/// with no pause between loans: at most `threads` connections are ever
/// busy, and fewer connections than threads means waits.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    fn start(pool: &Pool<SimManager>, threads: usize, hold: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..threads)
            .map(|_| {
                let (pool, stop) = (pool.clone(), stop.clone());
                thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let conn = pool.get().expect("a borrow under load");
                        thread::sleep(hold);
                        drop(conn);
                    }
                })
            })
            .collect();
        Load { stop, threads }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
    }
}

/// Watches `max_size` (and the open connections) every 2 ms.
struct Watch {
    stop: Arc<AtomicBool>,
    lowest: Arc<AtomicU32>,
    highest: Arc<AtomicU32>,
    most_open: Arc<AtomicU32>,
    thread: JoinHandle<()>,
}

impl Watch {
    fn start(pool: &Pool<SimManager>) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let lowest = Arc::new(AtomicU32::new(u32::MAX));
        let highest = Arc::new(AtomicU32::new(0));
        let most_open = Arc::new(AtomicU32::new(0));
        let thread = {
            let (pool, stop) = (pool.clone(), stop.clone());
            let (lowest, highest, most_open) = (lowest.clone(), highest.clone(), most_open.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let s = pool.state();
                    lowest.fetch_min(s.max_size, Ordering::Relaxed);
                    highest.fetch_max(s.max_size, Ordering::Relaxed);
                    most_open.fetch_max(s.total, Ordering::Relaxed);
                    thread::sleep(Duration::from_millis(2));
                }
            })
        };
        Watch {
            stop,
            lowest,
            highest,
            most_open,
            thread,
        }
    }

    /// (lowest max_size, highest max_size, most connections open) seen.
    fn stop(self) -> (u32, u32, u32) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        (
            self.lowest.load(Ordering::Relaxed),
            self.highest.load(Ordering::Relaxed),
            self.most_open.load(Ordering::Relaxed),
        )
    }
}

/// Waits up to `limit` for `max_size` to reach `size`.
fn reaches(pool: &Pool<SimManager>, size: u32, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if pool.state().max_size == size {
            return true;
        }
        thread::sleep(Duration::from_millis(5));
    }
    false
}

fn changes(pool: &Pool<SimManager>) -> u64 {
    let m = pool.metrics();
    m.resizes_up + m.resizes_down
}

/// Generous: the pool needs about (window + cool-down) per step.
const LIMIT: Duration = Duration::from_secs(20);

#[test]
fn grows_to_the_ceiling_under_load_and_shrinks_to_the_floor_without_it() {
    capture_logs();
    let db = db();
    let pool = pool(&db, "stepped", 3, sizing(3, 9));
    let watch = Watch::start(&pool);

    // High: 16 borrowers holding 10 ms each, far more than 9 connections.
    let load = Load::start(&pool, 16, Duration::from_millis(10));
    assert!(reaches(&pool, 9, LIMIT), "{:?}", pool.state());
    let grown = pool.metrics();
    assert_eq!(grown.resizes_up, 3, "3 → 5 → 7 → 9 in steps of 2");
    assert_eq!(grown.resizes_down, 0);
    // Steady at the ceiling: no change at all.
    thread::sleep(Duration::from_millis(1000));
    assert_eq!(changes(&pool), 3, "{:?}", resize_lines("stepped"));
    load.stop();

    // Low: nobody borrows; back to the floor, step by step.
    assert!(reaches(&pool, 3, LIMIT), "{:?}", pool.state());
    assert!(
        db.wait_until(LIMIT, |s| s.open <= 3),
        "surplus connections close: {}",
        db.stats()
    );
    thread::sleep(Duration::from_millis(500));
    let (lowest, highest, most_open) = watch.stop();
    assert_eq!(lowest, 3, "never below the floor");
    assert_eq!(highest, 9, "never above the ceiling");
    assert!(most_open <= 9, "{most_open} connections open at once");
    assert!(db.stats().peak_open <= 9, "{}", db.stats());
    let m = pool.metrics();
    assert_eq!((m.resizes_up, m.resizes_down), (3, 3));
    assert_eq!(m.state.max_size, 3);

    // Every change logged: from, to and why.
    let lines = resize_lines("stepped");
    assert_eq!(lines.len(), 6, "{lines:#?}");
    assert!(
        lines[0].contains("resized from 3 to 5") && lines[0].contains("mean acquire wait"),
        "{lines:#?}"
    );
    assert!(
        lines[5].contains("resized from 5 to 3") && lines[5].contains("at or below 30%"),
        "{lines:#?}"
    );
}

#[test]
fn a_steady_load_the_pool_can_serve_holds_its_size() {
    let db = db();
    let pool = pool(&db, "steady", 2, sizing(2, 16));
    // 5 borrowers: 2 and 4 connections are too few (they wait), 6 are
    // enough (5/6 is above grow_above, but nobody waits).
    let load = Load::start(&pool, 5, Duration::from_millis(10));
    assert!(reaches(&pool, 6, LIMIT), "{:?}", pool.state());
    let before = changes(&pool);
    let watch = Watch::start(&pool);
    // Ten windows and cool-downs of a steady load.
    thread::sleep(Duration::from_millis(3000));
    let (lowest, highest, _) = watch.stop();
    let after = changes(&pool);
    load.stop();
    assert!(
        after - before <= 1,
        "{} changes in a steady phase (flapping): sizes {lowest} to {highest}",
        after - before
    );
    assert!(highest <= 6, "grew to {highest} for 5 borrowers");
}

#[test]
fn a_load_that_comes_and_goes_faster_than_the_window_moves_nothing() {
    let db = db();
    let pool = pool(&db, "bursts", 4, sizing(2, 16));
    let watch = Watch::start(&pool);
    // 16 borrowers for 60 ms, then none for 60 ms, 20 times: saturated
    // and idle by turns, neither for a whole window (150 ms).
    for _ in 0..20 {
        let load = Load::start(&pool, 16, Duration::from_millis(10));
        thread::sleep(Duration::from_millis(60));
        load.stop();
        thread::sleep(Duration::from_millis(60));
    }
    let (lowest, highest, _) = watch.stop();
    assert!(
        changes(&pool) <= 1,
        "{} changes (flapping): sizes {lowest} to {highest}",
        changes(&pool)
    );
}

#[test]
fn waits_the_cool_down_between_changes() {
    capture_logs();
    let db = db();
    let mut s = sizing(2, 6);
    s.cool_down = Duration::from_millis(600);
    let pool = pool(&db, "cooling", 2, s);
    let load = Load::start(&pool, 16, Duration::from_millis(10));
    assert!(reaches(&pool, 6, LIMIT), "{:?}", pool.state());
    load.stop();
    let times = CHANGED_AT.lock().unwrap().clone();
    let times: Vec<Instant> = times
        .into_iter()
        .filter(|(name, _)| name == "cooling")
        .map(|(_, at)| at)
        .collect();
    assert_eq!(times.len(), 2, "2 → 4 → 6");
    // The pool's clock ticks every 1-4 ms: allow a few ticks.
    let gap = times[1] - times[0];
    assert!(gap >= Duration::from_millis(580), "changes {gap:?} apart");
}

#[test]
fn never_grows_beyond_its_share_of_the_server() {
    let db = db();
    let pool = pool(&db, "share", 2, sizing(2, 16));
    // The server takes 8 connections; half of them (the default share) is 4.
    pool.set_server_capacity(Some(8));
    let watch = Watch::start(&pool);
    let load = Load::start(&pool, 16, Duration::from_millis(10));
    assert!(reaches(&pool, 4, LIMIT), "{:?}", pool.state());
    // Saturated for many more windows: still 4.
    thread::sleep(Duration::from_millis(1500));
    load.stop();
    let (_, highest, most_open) = watch.stop();
    assert_eq!(highest, 4, "beyond the server's share");
    assert!(most_open <= 4);
    assert!(db.stats().peak_open <= 4, "{}", db.stats());
}

#[test]
fn off_by_default_the_size_never_moves() {
    let db = db();
    let pool = Pool::builder()
        .max_size(2)
        .connection_timeout(Duration::from_secs(10))
        .build(db.manager())
        .unwrap();
    assert_eq!(pool.config().adaptive, None);
    let watch = Watch::start(&pool);
    let load = Load::start(&pool, 16, Duration::from_millis(10));
    thread::sleep(Duration::from_millis(1000));
    load.stop();
    thread::sleep(Duration::from_millis(500));
    let (lowest, highest, _) = watch.stop();
    assert_eq!((lowest, highest), (2, 2));
    assert_eq!(changes(&pool), 0);
}

#[test]
fn resize_by_hand_is_counted_too() {
    let db = db();
    let pool = Pool::builder().max_size(2).build(db.manager()).unwrap();
    pool.resize(5).unwrap();
    pool.resize(3).unwrap();
    pool.resize(3).unwrap(); // no change, not counted
    let m = pool.metrics();
    assert_eq!((m.resizes_up, m.resizes_down), (1, 1));
    let text = m.to_prometheus();
    assert!(
        text.contains("pool_resizes_up_total{pool=\"") && text.contains("pool_connections_max{"),
        "{text}"
    );
}

/// The setting and field an invalid `adaptive_size` is refused for.
fn refused(max_size: u32, change: impl FnOnce(&mut AdaptiveSize)) -> (String, String) {
    let mut s = AdaptiveSize::new(2, 8);
    change(&mut s);
    match Pool::builder()
        .name("bad")
        .max_size(max_size)
        .adaptive_size(s)
        .build_unchecked(SimDb::new().manager())
    {
        Err(Error::Config {
            setting, reason, ..
        }) => (setting, reason),
        other => panic!("not a config error: {other:?}"),
    }
}

/// A change to valid settings that makes them invalid.
type Change = Box<dyn FnOnce(&mut AdaptiveSize)>;

#[test]
fn bad_settings_are_refused_with_their_name_and_range() {
    let cases: Vec<(u32, Change, &str, &str)> = vec![
        (
            4,
            Box::new(|s| s.floor = 0),
            "adaptive_size.floor",
            "use 1 to",
        ),
        (
            4,
            Box::new(|s| s.floor = 9),
            "adaptive_size.floor",
            "use 1 to",
        ),
        (
            4,
            Box::new(|s| s.ceiling = 100_000),
            "adaptive_size.ceiling",
            "to 65536",
        ),
        (1, Box::new(|_| {}), "adaptive_size.floor", "max_size 1"),
        (9, Box::new(|_| {}), "adaptive_size.ceiling", "max_size 9"),
        (
            4,
            Box::new(|s| s.grow_above = 1.5),
            "adaptive_size.grow_above",
            "at most 1",
        ),
        (
            4,
            Box::new(|s| s.grow_above = 0.2),
            "adaptive_size.grow_above",
            "above shrink_below",
        ),
        (
            4,
            Box::new(|s| s.shrink_below = f64::NAN),
            "adaptive_size.shrink_below",
            "0 to below 1",
        ),
        (
            4,
            Box::new(|s| s.server_share = 0.0),
            "adaptive_size.server_share",
            "above 0",
        ),
        (
            4,
            Box::new(|s| s.step = 0),
            "adaptive_size.step",
            "use 1 to",
        ),
        (
            4,
            Box::new(|s| s.window = Duration::from_millis(1)),
            "adaptive_size.window",
            "10ms to 3650 days",
        ),
        (
            4,
            Box::new(|s| s.cool_down = Duration::from_secs(3651 * 86_400)),
            "adaptive_size.cool_down",
            "0 to 3650 days",
        ),
    ];
    for (max_size, change, setting, range) in cases {
        let (got, reason) = refused(max_size, change);
        assert_eq!(got, setting, "{reason}");
        assert!(reason.contains(range), "{setting}: {reason}");
    }
    let err = Pool::builder()
        .max_size(4)
        .metrics(false)
        .adaptive_size(AdaptiveSize::new(2, 8))
        .build_unchecked(SimDb::new().manager())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("adaptive_size") && err.contains("metrics"),
        "{err}"
    );
}
