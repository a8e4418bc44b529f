//! Bad settings and URLs are clear errors: never a panic, a hang or a
//! connect storm (issue 16). Each test is one of the reproducers or a
//! sibling of it, seen from the user's side.

mod common;

use common::TestManager;
use pool_core::url_params::PoolParams;
use pool_core::{Builder, Config, Error, HealthThresholds, Pool};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Runs `f` on another thread and fails the test if it takes longer than
/// `limit` (a hang must fail the test, not stall the suite).
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => v,
        Err(_) => panic!("did not return within {limit:?}"),
    }
}

/// The setting and message of a configuration error.
fn config_error(result: Result<impl std::fmt::Debug, Error>) -> (String, String) {
    match result {
        Err(e @ Error::Config { .. }) => {
            let Error::Config { setting, .. } = &e else {
                unreachable!()
            };
            (setting.clone(), e.to_string())
        }
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

fn build_from_url(url: &str) -> Result<Pool<TestManager>, Error> {
    let (_, params) = PoolParams::extract(url, &[])?;
    params.apply(Pool::builder()).build(TestManager::new())
}

// Item 1: a '#' before "://" panicked ("start byte index 4 is out of bounds").
#[test]
fn a_hash_before_the_scheme_separator_is_not_a_panic() {
    for url in [
        "#://",
        "##://",
        "a#b://h/db?connection_limit=2",
        "#://h/db?connection_limit=2#x",
        "#://?",
        "x#://u:p@h/db?min_idle=1",
    ] {
        // Either answer is fine; a panic is not.
        let _ = PoolParams::extract(url, &[]);
        let _ = pool_core::url_params::redact_url(url);
    }
    // `a#b` is no scheme: not a URL, so it is left to the driver (which
    // rejects it) and nothing is taken out of it.
    let (url, params) = PoolParams::extract("a#b://h/db?connection_limit=2", &[]).unwrap();
    assert_eq!(url, "a#b://h/db?connection_limit=2");
    assert!(params.is_empty());
    let (url, params) = PoolParams::extract("pg+x.1://h/db?connection_limit=2", &[]).unwrap();
    assert_eq!(url, "pg+x.1://h/db");
    assert_eq!(params.max_size, Some(2));
}

// Item 2: a huge initialization_fail_timeout passed validate, then build
// panicked adding it to Instant::now().
#[test]
fn a_huge_initialization_fail_timeout_is_an_error_not_a_panic() {
    let (setting, msg) = config_error(within(Duration::from_secs(10), || {
        build_from_url("postgres://h/db?initialization_fail_timeout=10000000000000000000")
    }));
    assert_eq!(setting, "initialization_fail_timeout");
    assert!(msg.contains("3650 days"), "{msg}");
}

/// Every duration setting, set to `d` on an otherwise default builder.
fn each_duration_setting(d: Duration) -> Vec<(&'static str, Builder)> {
    vec![
        ("connection_timeout", Pool::builder().connection_timeout(d)),
        ("validation_timeout", Pool::builder().validation_timeout(d)),
        (
            "idle_timeout",
            Pool::builder().max_lifetime(None).idle_timeout(Some(d)),
        ),
        ("max_lifetime", Pool::builder().max_lifetime(Some(d))),
        (
            "keepalive_time",
            Pool::builder().max_lifetime(None).keepalive_time(Some(d)),
        ),
        (
            "alive_bypass_window",
            Pool::builder().alive_bypass_window(d),
        ),
        (
            "leak_detection_threshold",
            Pool::builder().leak_detection_threshold(Some(d)),
        ),
        (
            "initialization_fail_timeout",
            Pool::builder().initialization_fail_timeout(d),
        ),
        (
            "health_thresholds.window",
            Pool::builder().health_thresholds(HealthThresholds {
                window: d,
                ..HealthThresholds::default()
            }),
        ),
    ]
}

#[test]
fn every_duration_has_a_ceiling_named_in_the_error() {
    for d in [
        Duration::MAX,
        Duration::from_secs(u64::MAX / 1000),
        Duration::from_secs(3651 * 86_400),
    ] {
        for (name, builder) in each_duration_setting(d) {
            let (setting, msg) = config_error(within(Duration::from_secs(10), move || {
                builder.build(TestManager::new())
            }));
            assert_eq!(setting, name, "{d:?}");
            assert!(msg.contains("3650 days"), "{name}: {msg}");
        }
    }
}

#[test]
fn the_longest_accepted_durations_build_and_lend() {
    let ten_years = Duration::from_secs(3650 * 86_400);
    let pool = within(Duration::from_secs(10), move || {
        Pool::builder()
            .max_size(2)
            .connection_timeout(ten_years)
            .validation_timeout(ten_years)
            .idle_timeout(None)
            .max_lifetime(Some(ten_years))
            .keepalive_time(Some(ten_years - Duration::from_secs(1)))
            .alive_bypass_window(ten_years)
            .leak_detection_threshold(Some(ten_years))
            .initialization_fail_timeout(ten_years)
            .health_thresholds(HealthThresholds {
                window: ten_years,
                long_lived: ten_years,
                ..HealthThresholds::default()
            })
            .build(TestManager::new())
            .unwrap()
    });
    let conn = pool.get().unwrap();
    drop(conn);
    let _ = pool.health();
    pool.close();
}

// Item 3: sub-millisecond durations rounded to 0 ms on the coarse clock:
// `max_lifetime=0.0001` opened and closed 30,549 connections in 300 ms.
#[test]
fn sub_millisecond_lifetimes_are_rejected_with_the_range() {
    let (setting, msg) = config_error(build_from_url(
        "postgres://h/db?max_lifetime=0.0001&idle_timeout=0",
    ));
    assert_eq!(setting, "max_lifetime");
    assert!(msg.contains("100µs"), "{msg}");
    assert!(msg.contains("10ms"), "{msg}");
    for param in ["idle_timeout", "keepalive_time", "leak_detection_threshold"] {
        let url = format!("postgres://h/db?max_lifetime=0&{param}=0.0001");
        let (setting, msg) = config_error(build_from_url(&url));
        assert_eq!(setting, param);
        assert!(msg.contains("10ms"), "{param}: {msg}");
    }
}

#[test]
fn the_shortest_accepted_timings_build() {
    let ms = Duration::from_millis;
    let pool = Pool::builder()
        .max_size(2)
        .connection_timeout(ms(1))
        .validation_timeout(ms(1))
        .idle_timeout(Some(ms(10)))
        .max_lifetime(Some(ms(20)))
        .keepalive_time(Some(ms(10)))
        .leak_detection_threshold(Some(ms(10)))
        .alive_bypass_window(Duration::ZERO)
        .initialization_fail_timeout(Duration::ZERO)
        .build(TestManager::new())
        .unwrap();
    pool.close();
    let below = Pool::builder()
        .max_lifetime(Some(Duration::from_micros(9_999)))
        .build(TestManager::new());
    assert_eq!(config_error(below).0, "max_lifetime");
}

// Item 4: min_idle 0, idle_timeout 7 µs, initialization_fail_timeout 100 ms:
// build kept looping for over 100 s.
#[test]
fn build_with_connections_that_die_at_once_returns() {
    let result = within(Duration::from_secs(5), || {
        Pool::builder()
            .min_idle(Some(0))
            .idle_timeout(Some(Duration::from_micros(7)))
            .initialization_fail_timeout(Duration::from_millis(100))
            .build(TestManager::new())
            .map(|_| ())
    });
    let (setting, _) = config_error(result);
    assert_eq!(setting, "idle_timeout");
}

#[test]
fn build_returns_by_its_deadline_while_the_first_connect_hangs() {
    let m = TestManager::with_connect_delay(3_000);
    let started = Instant::now();
    let result = within(Duration::from_secs(10), move || {
        Pool::builder()
            .name("slow")
            .initialization_fail_timeout(Duration::from_millis(100))
            .connection_timeout(Duration::from_millis(300))
            .build(m)
            .map(|_| ())
    });
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1500), "build took {took:?}");
    let err = result.unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    let msg = pool_core::ErrorChain(&err).to_string();
    assert!(msg.contains("initialization_fail_timeout"), "{msg}");
}

#[test]
fn a_deadline_shorter_than_a_thread_start_does_not_fail_a_healthy_database() {
    // The first connect gets to finish (within connection_timeout).
    let pool = Pool::builder()
        .max_size(1)
        .initialization_fail_timeout(Duration::from_micros(1))
        .build(TestManager::with_connect_delay(50))
        .unwrap();
    assert_eq!(pool.state().total, 1);
}

// Item 6: HealthThresholds were never validated.
#[test]
fn health_thresholds_are_validated() {
    let cases: Vec<(&str, HealthThresholds)> = vec![
        (
            "health_thresholds.window",
            HealthThresholds {
                window: Duration::ZERO,
                ..HealthThresholds::default()
            },
        ),
        (
            "health_thresholds.critical_error_rate",
            HealthThresholds {
                critical_error_rate: f64::NAN,
                ..HealthThresholds::default()
            },
        ),
        (
            "health_thresholds.critical_utilization",
            HealthThresholds {
                critical_utilization: 2.0,
                ..HealthThresholds::default()
            },
        ),
        (
            "health_thresholds.healthy_error_rate",
            HealthThresholds {
                healthy_error_rate: -0.5,
                ..HealthThresholds::default()
            },
        ),
        (
            "health_thresholds.warning_utilization",
            HealthThresholds {
                warning_utilization: 0.99,
                ..HealthThresholds::default()
            },
        ),
        (
            "health_thresholds.warning_acquire_wait",
            HealthThresholds {
                warning_acquire_wait: Duration::from_secs(60),
                ..HealthThresholds::default()
            },
        ),
    ];
    for (name, thresholds) in cases {
        let (setting, msg) = config_error(
            Pool::builder()
                .health_thresholds(thresholds)
                .build(TestManager::new()),
        );
        assert_eq!(setting, name, "{msg}");
    }
}

// Item 7: the unknown-parameter error listed every parameter (~1,000 chars).
#[test]
fn an_unknown_parameter_error_is_short_and_suggests() {
    let driver = [
        "sslmode",
        "application_name",
        "options",
        "connect_timeout_ms",
        "keepalives",
        "keepalives_idle",
        "target_session_attrs",
    ];
    let err = PoolParams::extract("postgres://h/db?conection_limit=5", &driver).unwrap_err();
    let msg = err.to_string();
    assert!(msg.len() < 300, "{} chars: {msg}", msg.len());
    assert!(msg.contains("`conection_limit`"), "{msg}");
    assert!(msg.contains("`connection_limit`"), "{msg}");
    assert!(!msg.contains("target_session_attrs"), "{msg}");
}

#[test]
fn config_validate_names_setting_value_and_range() {
    let mut config = Config::default();
    config.max_lifetime = Some(Duration::from_millis(5));
    let msg = config.validate().unwrap_err().to_string();
    assert!(msg.contains("max_lifetime"), "{msg}");
    assert!(msg.contains("5ms"), "{msg}");
    assert!(msg.contains("10ms") && msg.contains("3650 days"), "{msg}");
}
