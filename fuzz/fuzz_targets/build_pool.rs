//! `Config::validate` on fuzzed settings, then `build` and a short use of
//! every configuration it accepts, with a manager that always connects: no
//! panic and no hang (libFuzzer's `-timeout` catches hangs; `cargo xtask
//! fuzz` sets it to 10 s).
//!
//! Sizes are kept small (`max_size` ≤ 8 when the pool is built) so that an
//! execution takes milliseconds; validate still sees the full range.
#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use pool_core::{Config, HealthThresholds, ManageConnection};

/// A manager whose connections always open and are always valid.
struct AlwaysConnects;

impl ManageConnection for AlwaysConnects {
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
}

/// A duration drawn from the interesting places: around zero, around the
/// floors, seconds, anything up to `Duration::MAX`.
#[derive(Debug, Clone, Copy, Arbitrary)]
enum D {
    Micros(u16),
    Millis(u16),
    Secs(u32),
    Any(u64, u32),
    Max,
}

impl D {
    fn get(self) -> Duration {
        match self {
            D::Micros(n) => Duration::from_micros(n.into()),
            D::Millis(n) => Duration::from_millis(n.into()),
            D::Secs(n) => Duration::from_secs(n.into()),
            D::Any(s, n) => Duration::new(s, n % 1_000_000_000),
            D::Max => Duration::MAX,
        }
    }
}

#[derive(Debug, Arbitrary)]
struct Settings {
    max_size: u32,
    min_idle: Option<u32>,
    connection_timeout: D,
    validation_timeout: D,
    idle_timeout: Option<D>,
    max_lifetime: Option<D>,
    keepalive_time: Option<D>,
    test_on_check_out: bool,
    alive_bypass_window: D,
    leak_detection_threshold: Option<D>,
    initialization_fail_timeout: D,
    fail_fast: bool,
    metrics: bool,
    name: Option<String>,
    window: D,
    rates: [f64; 6],
    waits: [D; 3],
    long_lived: D,
    unchecked: bool,
}

fuzz_target!(|s: Settings| {
    let mut c = Config::default();
    c.max_size = s.max_size;
    c.min_idle = s.min_idle;
    c.connection_timeout = s.connection_timeout.get();
    c.validation_timeout = s.validation_timeout.get();
    c.idle_timeout = s.idle_timeout.map(D::get);
    c.max_lifetime = s.max_lifetime.map(D::get);
    c.keepalive_time = s.keepalive_time.map(D::get);
    c.test_on_check_out = s.test_on_check_out;
    c.alive_bypass_window = s.alive_bypass_window.get();
    c.leak_detection_threshold = s.leak_detection_threshold.map(D::get);
    c.initialization_fail_timeout = s.initialization_fail_timeout.get();
    c.fail_fast = s.fail_fast;
    c.metrics = s.metrics;
    c.name = s.name;
    c.health = HealthThresholds {
        window: s.window.get(),
        critical_error_rate: s.rates[0],
        warning_error_rate: s.rates[1],
        healthy_error_rate: s.rates[2],
        critical_utilization: s.rates[3],
        warning_utilization: s.rates[4],
        healthy_utilization: s.rates[5],
        critical_acquire_wait: s.waits[0].get(),
        warning_acquire_wait: s.waits[1].get(),
        healthy_acquire_wait: s.waits[2].get(),
        long_lived: s.long_lived.get(),
    };
    if let Err(e) = c.validate() {
        assert!(matches!(e, pool_core::Error::Config { .. }), "{e:?}");
        return;
    }
    if c.max_size > 8 || c.min_idle.is_some_and(|m| m > 8) {
        return; // valid, but too slow to build thousands of times
    }
    // With both under a second, the first connect may not have run yet when
    // build gives up (a thread start under ASan takes a while): a clean
    // Error::Connect is then the documented outcome.
    let may_give_up =
        c.initialization_fail_timeout.max(c.connection_timeout) < Duration::from_secs(1);
    let builder = pool_core::Builder::from_config(c);
    let built = if s.unchecked {
        builder.build_unchecked(AlwaysConnects)
    } else {
        builder.build(AlwaysConnects)
    };
    let pool = match built {
        Ok(pool) => pool,
        Err(pool_core::Error::Connect { .. }) if may_give_up => return,
        Err(e) => panic!("a valid configuration with a manager that always connects: {e:?}"),
    };
    drop(pool.get());
    {
        let conn = pool
            .get_timeout(Duration::from_secs(5))
            .expect("a connection within 5 s");
        drop(conn);
    }
    let _ = pool.try_get();
    let _ = pool.health();
    let _ = pool.metrics();
    pool.close();
});
