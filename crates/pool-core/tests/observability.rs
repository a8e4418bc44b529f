//! Metrics counters, distributions, Prometheus output, events and the
//! connection customizer.

mod common;

use common::{eventually, TestManager};
use pool_core::{
    CheckinEvent, CheckoutEvent, CloseReason, CustomizeConnection, Customized, HandleEvent, Pool,
    ReleaseEvent, TimeoutEvent,
};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[test]
fn counters_move_as_connections_live_and_die() {
    let m = TestManager::new();
    let p = Pool::builder()
        .name("counted")
        .max_size(2)
        .alive_bypass_window(Duration::ZERO)
        .build(m.clone())
        .unwrap();
    let base = p.metrics();
    assert_eq!(base.created, 2);

    drop(p.get().unwrap());
    let mut c = p.get().unwrap();
    c.mark_broken();
    drop(c);
    let held = p.get().unwrap();
    let held2 = p.get_timeout(Duration::from_secs(2)).unwrap();
    assert!(p.get_timeout(Duration::from_millis(5)).is_err());
    drop(held2.detach());
    drop(held);
    m.db.invalid.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(5));
    // Every check fails now, new connections' too (a zero bypass window
    // checks every borrow): this borrow times out.
    assert!(p.get_timeout(Duration::from_millis(300)).is_err());
    m.db.invalid.store(false, Ordering::SeqCst);

    let after = p.metrics();
    assert_eq!(after.closed.broken, 1, "{after:#?}");
    assert_eq!(after.closed.detached, 1, "{after:#?}");
    assert_eq!(after.acquire_timeouts, 2);
    assert!(after.validation_failures >= 1, "{after:#?}");
    assert_eq!(after.closed.failed_validation, after.validation_failures);
    assert!(after.acquired >= 4, "{after:#?}");
    assert_eq!(after.acquire_wait.count, after.acquired);
    assert!(after.created >= 4, "{after:#?}");
    assert_eq!(after.connection_errors, 0);
    assert!(after.creation.count >= 4 && after.creation.max > Duration::ZERO);

    // Connections opened again while the checks pass, then connects refused.
    assert!(eventually(Duration::from_secs(2), || p.state().idle > 0));
    m.db.refuse.store(true, Ordering::SeqCst);
    let mut c = p.get_timeout(Duration::from_secs(1)).unwrap();
    c.mark_broken();
    drop(c);
    assert!(eventually(Duration::from_secs(2), || p
        .metrics()
        .connection_errors
        > 0));
    m.db.refuse.store(false, Ordering::SeqCst);
    assert!(eventually(Duration::from_secs(3), || p.state().total >= 1));

    p.close();
    let closed = p.metrics();
    assert!(closed.closed.pool_closed >= 1);
    assert_eq!(
        closed.created,
        closed.closed.total(),
        "every connection opened was closed or detached: {closed:#?}"
    );
}

#[test]
fn time_lent_quantiles_match_a_known_input() {
    let p = Pool::builder()
        .max_size(1)
        .build(TestManager::new())
        .unwrap();
    for hold in [60u64, 120, 120, 120, 240] {
        let c = p.get().unwrap();
        std::thread::sleep(Duration::from_millis(hold));
        drop(c);
    }
    let usage = p.metrics().usage;
    assert_eq!(usage.count, 5);
    let near = |d: Duration, want: u64| {
        let got = d.as_millis() as f64;
        (got - want as f64).abs() / want as f64 <= 0.05
    };
    assert!(near(usage.p50, 120), "{usage:?}");
    assert!(near(usage.max, 240), "{usage:?}");
    assert!(near(usage.mean, 132), "{usage:?}");
}

#[test]
fn prometheus_text_names_every_series_with_the_pool() {
    let p = Pool::builder()
        .name("orders")
        .max_size(3)
        .build(TestManager::new())
        .unwrap();
    drop(p.get().unwrap());
    let text = p.metrics().to_prometheus();
    for line in [
        "# TYPE pool_connections_created_total counter",
        "pool_connections_created_total{pool=\"orders\"} 3",
        "pool_connections_closed_total{pool=\"orders\",reason=\"idle_timeout\"} 0",
        "pool_connections_acquired_total{pool=\"orders\"} 1",
        "pool_connections_total{pool=\"orders\"} 3",
        "pool_connections_max{pool=\"orders\"} 3",
        "# TYPE pool_acquire_seconds histogram",
        "pool_acquire_seconds_count{pool=\"orders\"} 1",
        "pool_acquire_seconds_bucket{pool=\"orders\",le=\"+Inf\"} 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    let le = "pool_acquire_seconds_bucket{pool=\"orders\",le=\"0.0001\"} ";
    assert!(text.lines().any(|l| l.starts_with(le)), "{text}");
    // Every sample line is `name{labels} value`, every family declared.
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = l.rsplit_once(' ').unwrap();
        assert!(series.contains("{pool=\"orders\""), "{l}");
        value.parse::<f64>().unwrap();
    }
    // Two pools stay distinct by name.
    let other = Pool::builder()
        .name("billing")
        .max_size(1)
        .build(TestManager::new())
        .unwrap();
    assert!(other
        .metrics()
        .to_prometheus()
        .contains("pool_connections_total{pool=\"billing\"} 1"));
}

#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl HandleEvent for Recorder {
    fn handle_acquire(&self, e: pool_core::AcquireEvent) {
        self.0.lock().unwrap().push(format!("acquire {}", e.id));
    }
    fn handle_checkout(&self, e: CheckoutEvent) {
        self.0.lock().unwrap().push(format!("checkout {}", e.id));
    }
    fn handle_checkin(&self, e: CheckinEvent) {
        assert!(e.lent_for >= Duration::from_millis(15), "{e:?}");
        self.0.lock().unwrap().push(format!("checkin {}", e.id));
    }
    fn handle_timeout(&self, e: TimeoutEvent) {
        assert_eq!(e.state.active, 1);
        self.0.lock().unwrap().push("timeout".into());
    }
    fn handle_release(&self, e: ReleaseEvent) {
        self.0
            .lock()
            .unwrap()
            .push(format!("release {} {}", e.id, e.reason));
    }
}

#[test]
fn events_arrive_in_order() {
    let rec = Arc::new(Recorder::default());
    let p = Pool::builder()
        .max_size(1)
        .event_handler(rec.clone())
        .build(TestManager::new())
        .unwrap();
    let mut c = p.get().unwrap();
    assert!(p.get_timeout(Duration::from_millis(5)).is_err());
    std::thread::sleep(Duration::from_millis(20));
    c.mark_broken();
    drop(c);
    p.close();
    let events = rec.0.lock().unwrap().clone();
    assert_eq!(
        &events[..5],
        [
            "acquire 1",
            "checkout 1",
            "timeout",
            "checkin 1",
            "release 1 broken"
        ],
        "{events:?}"
    );
    assert!(events[5..]
        .iter()
        .all(|e| e.starts_with("acquire") || e.starts_with("release")));
    let _ = CloseReason::Broken;
}

struct Init(Arc<Mutex<Vec<String>>>);

impl CustomizeConnection<common::Conn, std::io::Error> for Init {
    fn on_acquire(&self, conn: &mut common::Conn) -> Result<(), std::io::Error> {
        if conn.id == 2 {
            return Err(std::io::Error::other("init SQL failed"));
        }
        conn.dirty = true; // "SET application_name = ..."
        self.0.lock().unwrap().push(format!("init {}", conn.id));
        Ok(())
    }
    fn on_release(&self, conn: &mut common::Conn) {
        self.0.lock().unwrap().push(format!("bye {}", conn.id));
    }
}

#[test]
fn the_customizer_prepares_and_sees_off_connections() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let m = TestManager::new();
    let p = Pool::builder()
        .max_size(1)
        .fail_fast(false) // the failed init would otherwise fail the next get fast
        .build(Customized::new(m.clone(), Init(log.clone())))
        .unwrap();
    let c = p.get().unwrap();
    assert!(c.dirty, "on_acquire ran before the first borrow");
    let mut c = c;
    c.mark_broken();
    drop(c);
    // Connection 2's init fails: it is discarded, counted as a connect error,
    // and connection 3 takes its place.
    let c = p.get_timeout(Duration::from_secs(2)).unwrap();
    assert_eq!(c.id, 3);
    drop(c);
    p.close();
    assert_eq!(*log.lock().unwrap(), ["init 1", "bye 1", "init 3", "bye 3"]);
    assert_eq!(p.metrics().connection_errors, 1);
    assert_eq!(
        m.db.open_now(),
        0,
        "the connection whose init failed was closed"
    );
}

#[test]
fn retirement_counters_name_their_reason() {
    let m = TestManager::new();
    let p = Pool::builder()
        .max_size(3)
        .min_idle(Some(1))
        .idle_timeout(Some(Duration::from_millis(60)))
        .max_lifetime(Some(Duration::from_millis(400)))
        .leak_detection_threshold(Some(Duration::from_millis(30)))
        .build(m.clone())
        .unwrap();
    // Idle timeout: two connections above min_idle go idle and time out.
    let held: Vec<_> = (0..3).map(|_| p.get().unwrap()).collect();
    drop(held);
    assert!(eventually(Duration::from_secs(3), || {
        p.metrics().closed.idle_timeout >= 2
    }));
    // Reset failure.
    m.db.reset_fails.store(true, Ordering::SeqCst);
    drop(p.get().unwrap());
    m.db.reset_fails.store(false, Ordering::SeqCst);
    assert_eq!(p.metrics().closed.reset_failed, 1);
    // Eviction (once min_idle is restored).
    assert!(eventually(Duration::from_secs(2), || p.state().idle >= 1));
    p.soft_evict_all();
    assert!(p.metrics().closed.evicted >= 1);
    // A leak, reported once.
    let c = p.get_timeout(Duration::from_secs(2)).unwrap();
    assert!(eventually(Duration::from_secs(3), || {
        p.metrics().leaks_detected == 1
    }));
    drop(c);
    // Max lifetime.
    assert!(eventually(Duration::from_secs(3), || {
        p.metrics().closed.max_lifetime >= 1
    }));
    let after = p.metrics();
    assert!(after.lifetime.count >= 4, "{after:#?}");
    assert!(after.usage.max >= Duration::from_millis(30), "{after:#?}");
}
