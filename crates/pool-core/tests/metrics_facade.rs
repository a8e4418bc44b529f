//! The `metrics` feature: the pool's figures reach a `metrics` recorder
//! under stable names, labelled with the pool's name.

mod common;

use common::TestManager;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use pool_core::Pool;

/// A recorded metric: name, labels, value.
type Recorded = (String, Vec<(String, String)>, DebugValue);

#[test]
fn metrics_reach_the_facade_labelled_by_pool() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let orders = Pool::builder()
            .name("orders")
            .max_size(2)
            .build(TestManager::new())
            .unwrap();
        let billing = Pool::builder()
            .name("billing")
            .max_size(1)
            .build(TestManager::new())
            .unwrap();
        let held = orders.get().unwrap();
        drop(billing.get().unwrap());
        orders.metrics();
        billing.metrics();
        drop(held);
    });
    let values: Vec<Recorded> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let labels = key
                .labels()
                .map(|l| (l.key().to_string(), l.value().to_string()))
                .collect();
            (key.name().to_string(), labels, value)
        })
        .collect();
    let find = |name: &str, pool: &str| {
        values
            .iter()
            .find(|(n, labels, _)| {
                n == name && labels.iter().any(|(k, v)| k == "pool" && v == pool)
            })
            .map(|(_, _, v)| v)
    };
    assert_eq!(
        find("pool_connections_active", "orders"),
        Some(&DebugValue::Gauge(1.0.into()))
    );
    assert_eq!(
        find("pool_connections_active", "billing"),
        Some(&DebugValue::Gauge(0.0.into()))
    );
    assert_eq!(
        find("pool_connections_created_total", "orders"),
        Some(&DebugValue::Counter(2))
    );
    assert!(find("pool_acquire_seconds", "orders").is_some());
    // The distributions also go out as the series of a Prometheus
    // histogram: cumulative bucket counters, a count and a sum.
    let bucket = |pool: &str, le: &str| {
        values
            .iter()
            .find(|(n, labels, _)| {
                n == "pool_acquire_seconds_bucket"
                    && labels.iter().any(|(k, v)| k == "pool" && v == pool)
                    && labels.iter().any(|(k, v)| k == "le" && v == le)
            })
            .map(|(_, _, v)| v)
    };
    assert_eq!(bucket("orders", "+Inf"), Some(&DebugValue::Counter(1)));
    assert_eq!(bucket("orders", "3600"), Some(&DebugValue::Counter(1)));
    assert!(bucket("billing", "0.0001").is_some());
    assert_eq!(
        find("pool_acquire_seconds_count", "orders"),
        Some(&DebugValue::Counter(1))
    );
    assert!(find("pool_acquire_seconds_sum", "billing").is_some());
}
