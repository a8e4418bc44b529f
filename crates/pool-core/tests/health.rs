//! Health verdicts: drive a pool into each status and check the verdict and
//! the advice. Windows and thresholds are shortened so that each case takes
//! a fraction of a second.

mod common;

use common::TestManager;
use pool_core::{Alert, HealthStatus, HealthThresholds, Pool};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

fn thresholds() -> HealthThresholds {
    HealthThresholds {
        window: Duration::from_millis(400),
        critical_acquire_wait: Duration::from_millis(500),
        warning_acquire_wait: Duration::from_millis(100),
        healthy_acquire_wait: Duration::from_millis(20),
        ..HealthThresholds::default()
    }
}

fn pool(max: u32, manager: TestManager) -> Pool<TestManager> {
    Pool::builder()
        .max_size(max)
        .connection_timeout(Duration::from_millis(30))
        .health_thresholds(thresholds())
        .build(manager)
        .unwrap()
}

#[test]
fn light_load_is_healthy() {
    let p = pool(4, TestManager::new());
    for _ in 0..50 {
        drop(p.get().unwrap());
    }
    let h = p.health();
    assert_eq!(h.status, HealthStatus::Healthy, "{h}");
    assert!(h.alerts.is_empty(), "{h}");
    assert_eq!(h.error_rate, 0.0);
}

#[test]
fn a_saturated_pool_is_critical_and_advice_says_how_big_it_should_be() {
    let p = pool(2, TestManager::new());
    let stop = AtomicBool::new(false);
    // Four borrowers on two connections, each loan 50 ms. The window opens
    // once every borrower runs and closes before any stops, so only the
    // hand-offs between loans (a thread wake-up each, up to a few ms on a
    // loaded 2-core machine) leave a connection idle: about a dozen per
    // connection in the window, where 10 ms loans over the borrowers' whole
    // run gave 91 % on a busy CI machine.
    let h = std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(c) = p.get_timeout(Duration::from_secs(2)) {
                        std::thread::sleep(Duration::from_millis(50));
                        drop(c);
                    }
                }
            });
        }
        std::thread::sleep(Duration::from_millis(150));
        p.health(); // start of the window
        std::thread::sleep(Duration::from_millis(600));
        let h = p.health();
        stop.store(true, Ordering::Relaxed);
        h
    });
    assert_eq!(h.status, HealthStatus::Critical, "{h}");
    assert!(h.utilization > 0.95, "{h}");
    assert!(
        h.alerts
            .iter()
            .any(|a| matches!(a, Alert::HighUtilization { .. })),
        "{h}"
    );
    let advice = h.recommendations.join("\n");
    assert!(advice.contains("raise max_size from 2 to"), "{advice}");
    assert!(advice.contains("Little's law"), "{advice}");
    // Four borrowers, always holding or waiting: about 4 wanted, × 1.5.
    let suggested: u32 = advice
        .split("raise max_size from 2 to ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!((3..=8).contains(&suggested), "{advice}");

    // The server's capacity bounds the advice.
    p.set_server_capacity(Some(3));
    let advice = p.health().recommendations.join("\n");
    assert!(
        advice.contains("bounded by the server's capacity of 3"),
        "{advice}"
    );
}

/// `failures` timeouts among `ok` successful borrows.
fn with_errors(ok: usize, failures: usize) -> pool_core::Health {
    let p = pool(1, TestManager::new());
    // Let the window grow, so the short loans below are a small share of it.
    std::thread::sleep(Duration::from_millis(150));
    for _ in 0..ok {
        drop(p.get().unwrap());
    }
    let held = p.get().unwrap();
    for _ in 0..failures {
        assert!(p.get_timeout(Duration::from_millis(1)).is_err());
    }
    drop(held);
    p.health()
}

#[test]
fn error_rates_map_to_fair_warning_and_critical() {
    // 1 failure in 40: 2.4 % - above healthy (1 %), below warning (5 %).
    let h = with_errors(39, 1);
    assert_eq!(h.status, HealthStatus::Fair, "{h}");
    assert!(
        h.alerts
            .iter()
            .any(|a| matches!(a, Alert::PoolExhausted { timeouts: 1 })),
        "{h}"
    );
    // 2 in 28: 7 %.
    let h = with_errors(25, 2);
    assert_eq!(h.status, HealthStatus::Warning, "{h}");
    assert!(
        h.alerts
            .iter()
            .any(|a| matches!(a, Alert::HighErrorRate { .. })),
        "{h}"
    );
    // 5 in 20: 25 %.
    let h = with_errors(14, 5);
    assert_eq!(h.status, HealthStatus::Critical, "{h}");
    assert!((h.error_rate - 0.25).abs() < 0.01, "{h}");
}

#[test]
fn slow_connects_with_low_utilization_blame_the_database() {
    // Every borrow waits for a 150 ms connect; connections are barely used.
    let p = Pool::builder()
        .max_size(4)
        .min_idle(Some(0))
        .health_thresholds(thresholds())
        .build_unchecked(TestManager::with_connect_delay(150))
        .unwrap();
    let c = p.get().unwrap();
    c.detach(); // the next borrow must connect again
    drop(p.get().unwrap());
    let h = p.health();
    assert!(h.mean_acquire_wait >= Duration::from_millis(100), "{h}");
    assert_eq!(h.status, HealthStatus::Warning, "{h}");
    assert!(
        h.alerts
            .iter()
            .any(|a| matches!(a, Alert::SlowAcquisition { .. })),
        "{h}"
    );
    let advice = h.recommendations.join("\n");
    assert!(
        advice.contains("the database or the network is slow"),
        "{advice}"
    );
}

#[test]
fn leaks_and_long_lived_connections_get_advice() {
    let p = Pool::builder()
        .max_size(2)
        .max_lifetime(None)
        .idle_timeout(None)
        .leak_detection_threshold(Some(Duration::from_millis(20)))
        .health_thresholds(HealthThresholds {
            long_lived: Duration::from_millis(50),
            ..thresholds()
        })
        .build(TestManager::new())
        .unwrap();
    let (held, line) = (p.get().unwrap(), line!());
    std::thread::sleep(Duration::from_millis(80));
    let advice = p.health().recommendations.join("\n");
    assert!(
        advice.contains(&format!("leaks detected at {}:{line}", file!())),
        "{advice}"
    );
    assert!(advice.contains("lower max_lifetime (now off)"), "{advice}");
    drop(held);
}

#[test]
fn the_verdict_covers_a_recent_window_not_the_whole_life() {
    // A bad start (timeouts), then a quiet window: healthy again.
    let p = pool(1, TestManager::new());
    let held = p.get().unwrap();
    for _ in 0..5 {
        assert!(p.get_timeout(Duration::from_millis(1)).is_err());
    }
    drop(held);
    assert_eq!(p.health().status, HealthStatus::Critical);
    std::thread::sleep(Duration::from_millis(500));
    p.health(); // a sample after the bad period
    std::thread::sleep(Duration::from_millis(450));
    for _ in 0..20 {
        drop(p.get().unwrap());
    }
    let h = p.health();
    assert_eq!(h.status, HealthStatus::Healthy, "{h}");
}

/// A database that takes 3 sessions and refuses more.
struct ThreeSessions(TestManager);

impl pool_core::ManageConnection for ThreeSessions {
    type Connection = common::Conn;
    type Error = std::io::Error;
    fn connect(&self) -> Result<common::Conn, std::io::Error> {
        if self.0.db.open_now() >= 3 {
            return Err(std::io::Error::other(
                "too many connections for role \"app\" (test database)",
            ));
        }
        self.0.connect()
    }
    fn is_valid(&self, c: &mut common::Conn, t: Duration) -> Result<(), std::io::Error> {
        self.0.is_valid(c, t)
    }
    fn has_broken(&self, c: &mut common::Conn) -> bool {
        self.0.has_broken(c)
    }
}

#[test]
fn a_pool_held_below_max_size_by_failing_connects_is_not_healthy() {
    // The database takes 3 sessions; the pool of 8 keeps trying for more
    // (min_idle 8) and keeps failing. Nobody's borrow fails, so error rate
    // and utilization alone would say healthy.
    let m = TestManager::new();
    let pool = Pool::builder()
        .max_size(8)
        .health_thresholds(HealthThresholds {
            window: Duration::from_secs(2),
            ..HealthThresholds::default()
        })
        .build_unchecked(ThreeSessions(m.clone()))
        .unwrap();
    assert!(common::eventually(Duration::from_secs(5), || pool
        .metrics()
        .connection_errors
        >= 3));
    assert_eq!(pool.state().total, 3);
    let h = pool.health();
    assert!(h.status >= HealthStatus::Warning, "{h}");
    let alert = h
        .alerts
        .iter()
        .find(|a| matches!(a, Alert::ConnectFailures { .. }))
        .unwrap_or_else(|| panic!("no connect-failure alert: {h}"));
    assert!(
        alert.to_string().contains("too many connections"),
        "{alert}"
    );
    assert!(alert.to_string().contains("3 of max_size 8"), "{alert}");
    assert!(
        h.recommendations
            .iter()
            .any(|r| r.contains("connection limits")),
        "{h}"
    );
}

#[test]
fn a_pool_that_cannot_connect_at_all_is_critical() {
    let m = TestManager::new();
    m.db.refuse.store(true, Ordering::SeqCst);
    let pool = Pool::builder()
        .max_size(2)
        .health_thresholds(thresholds())
        .build_unchecked(m.clone())
        .unwrap();
    assert!(common::eventually(Duration::from_secs(3), || pool
        .metrics()
        .connection_errors
        >= 1));
    let h = pool.health();
    assert_eq!(h.status, HealthStatus::Critical, "{h}");
}
