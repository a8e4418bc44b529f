//! Uncontended get + return on one thread (criterion), no-op managers:
//!
//! * `uncontended/*`: pool-core with default settings against r2d2 (its
//!   defaults, and with `test_on_check_out(false)`) and a plain mutex pool
//!   (target 1);
//! * `scale/*`: the same cycle at `max_size` 8 and 1024 (target 5);
//! * `leak_detection/*`: pool-core with leak detection off and on (target 7),
//!   and on with `RUST_BACKTRACE=1` (a backtrace per loan);
//! * `primitives/*`: what an `Arc` clone + drop, a claim CAS + release store
//!   and `Instant::now()` cost here, for reading the others.
//!
//! `cargo xtask bench` reads the medians from
//! `<target>/criterion/<group>/<name>/new/estimates.json`.

use std::hint::black_box;
use std::time::Duration;

use benches::{MutexPool, NoopManager, R2d2Noop};
use criterion::{criterion_group, criterion_main, Criterion};

fn ours(max_size: u32) -> pool_core::Pool<NoopManager> {
    pool_core::Pool::builder()
        .max_size(max_size)
        .build(NoopManager)
        .expect("pool-core pool")
}

fn r2d2(max_size: u32, test_on_check_out: bool) -> r2d2::Pool<R2d2Noop> {
    r2d2::Pool::builder()
        .max_size(max_size)
        .test_on_check_out(test_on_check_out)
        .build(R2d2Noop)
        .expect("r2d2 pool")
}

fn uncontended(c: &mut Criterion) {
    let mut group = c.benchmark_group("uncontended");
    // Default settings everywhere (pool-core and r2d2 both default to 10).
    let pool = pool_core::Pool::builder()
        .build(NoopManager)
        .expect("pool-core pool");
    group.bench_function("pool-core", |b| b.iter(|| black_box(*pool.get().unwrap())));
    // The loan that holds its own reference to the pool (r2d2's kind).
    group.bench_function("pool-core-owned", |b| {
        b.iter(|| black_box(*pool.get_owned().unwrap()))
    });
    drop(pool);
    let pool = r2d2::Pool::builder().build(R2d2Noop).expect("r2d2 pool");
    group.bench_function("r2d2", |b| b.iter(|| black_box(*pool.get().unwrap())));
    drop(pool);
    let pool = r2d2(10, false);
    group.bench_function("r2d2-no-test", |b| {
        b.iter(|| black_box(*pool.get().unwrap()))
    });
    drop(pool);
    let floor = MutexPool::new(10);
    group.bench_function("mutex-vec", |b| b.iter(|| black_box(floor.get().conn)));
    group.finish();
}

fn scale(c: &mut Criterion) {
    let mut group = c.benchmark_group("scale");
    for size in [8, 1024] {
        let pool = ours(size);
        group.bench_function(format!("pool-core-{size}"), |b| {
            b.iter(|| black_box(*pool.get().unwrap()))
        });
    }
    for size in [8, 1024] {
        let pool = r2d2(size, false);
        group.bench_function(format!("r2d2-no-test-{size}"), |b| {
            b.iter(|| black_box(*pool.get().unwrap()))
        });
    }
    group.finish();
}

fn leak_detection(c: &mut Criterion) {
    let mut group = c.benchmark_group("leak_detection");
    // pool-core captures a backtrace per loan when `RUST_BACKTRACE` is set
    // (read when the pool is built): "on" is leak detection as configured
    // in production, "on-rust-backtrace" shows what that setting costs.
    let original = std::env::var_os("RUST_BACKTRACE");
    for (name, threshold, backtrace) in [
        ("off", None, "0"),
        ("on", Some(Duration::from_secs(60)), "0"),
        ("on-rust-backtrace", Some(Duration::from_secs(60)), "1"),
    ] {
        // Edition 2021: safe; the other threads alive now (pools' workers)
        // never read the environment.
        std::env::set_var("RUST_BACKTRACE", backtrace);
        let pool = pool_core::Pool::builder()
            .leak_detection_threshold(threshold)
            .build(NoopManager)
            .expect("pool-core pool");
        match &original {
            Some(v) => std::env::set_var("RUST_BACKTRACE", v),
            None => std::env::remove_var("RUST_BACKTRACE"),
        }
        group.bench_function(name, |b| b.iter(|| black_box(*pool.get().unwrap())));
    }
    group.finish();
}

/// What the primitives a get + return is made of cost on this machine: the
/// floor under any design that uses them.
fn primitives(c: &mut Criterion) {
    let mut group = c.benchmark_group("primitives");
    let arc = std::sync::Arc::new(0u64);
    group.bench_function("arc-clone-drop", |b| {
        b.iter(|| drop(black_box(std::sync::Arc::clone(black_box(&arc)))))
    });
    let state = std::sync::atomic::AtomicU8::new(1);
    group.bench_function("cas-claim-store-release", |b| {
        b.iter(|| {
            use std::sync::atomic::Ordering;
            let s = black_box(&state);
            let claimed = s
                .compare_exchange(1, 2, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok();
            s.store(1, Ordering::Release);
            black_box(claimed)
        })
    });
    group.bench_function("instant-now", |b| {
        b.iter(|| black_box(std::time::Instant::now()))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500))
        .sample_size(50);
    targets = uncontended, scale, leak_detection, primitives
}
criterion_main!(benches);
