//! Memory (plain `main`, counting global allocator), targets 2 and 8:
//!
//! * allocations per get + return on one thread, after warm-up, for
//!   pool-core (leak detection off and on), r2d2 and the mutex pool;
//! * bookkeeping bytes per connection: the live heap bytes of a pool of
//!   N = 1000 no-op connections and of N + 1000, subtracted and divided by
//!   1000 (the no-op connection is a `u64` stored in the pool, so its 8 bytes
//!   are included).
//!
//! Deterministic, so one run is enough (the zero-allocation property is also
//! a test: `benches/tests/alloc.rs`). Writes `memory.json` for
//! `cargo xtask bench`.

use std::hint::black_box;
use std::time::Duration;

use benches::alloc::{self, CountingAlloc, Counts};
use benches::report::{self, BenchArgs};
use benches::{MutexPool, NoopManager, R2d2Noop};
use serde_json::json;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Allocations on this thread per call of `cycle`, after a warm-up.
fn per_cycle(cycles: u64, mut cycle: impl FnMut()) -> (f64, f64) {
    for _ in 0..1000 {
        cycle();
    }
    let before = alloc::this_thread();
    for _ in 0..cycles {
        cycle();
    }
    let d = alloc::this_thread().since(before);
    (
        d.allocs as f64 / cycles as f64,
        d.bytes_allocated as f64 / cycles as f64,
    )
}

/// Live heap bytes (all threads) held by what `build` returns, once built
/// and settled: the median of three builds.
fn live_bytes<P>(build: impl Fn() -> P) -> i64 {
    let mut samples: Vec<i64> = (0..3)
        .map(|_| {
            let before: Counts = alloc::global();
            let pool = build();
            // Let background threads finish starting up.
            std::thread::sleep(Duration::from_millis(100));
            let live = alloc::global().since(before).live_bytes();
            drop(black_box(pool));
            std::thread::sleep(Duration::from_millis(20));
            live
        })
        .collect();
    samples.sort_unstable();
    samples[1]
}

fn ours(n: u32) -> pool_core::Pool<NoopManager> {
    let pool = pool_core::Pool::builder()
        .max_size(n)
        .initialization_fail_timeout(Duration::from_secs(30))
        .build(NoopManager)
        .expect("pool-core pool");
    assert_eq!(pool.state().total, n, "pool-core opened every connection");
    pool
}

fn r2d2_pool(n: u32) -> r2d2::Pool<R2d2Noop> {
    let pool = r2d2::Pool::builder()
        .max_size(n)
        .build(R2d2Noop)
        .expect("r2d2 pool");
    assert_eq!(pool.state().connections, n, "r2d2 opened every connection");
    pool
}

fn main() {
    let args = BenchArgs::from_env();
    let cycles = if args.bench { 200_000 } else { 1_000 };
    let (n, m) = (1000u32, 2000u32);

    let mut per_cycle_rows = Vec::new();
    {
        let pool = pool_core::Pool::builder()
            .build(NoopManager)
            .expect("pool-core pool");
        per_cycle_rows.push((
            "pool-core",
            per_cycle(cycles, || drop(black_box(pool.get().unwrap()))),
        ));
        // pool-core captures a backtrace per loan when `RUST_BACKTRACE` is
        // set (read when the pool is built). Edition 2021: `set_var` is safe;
        // no other thread reads the environment.
        let original = std::env::var_os("RUST_BACKTRACE");
        for (name, backtrace) in [
            ("pool-core-leak-detection", "0"),
            ("pool-core-leak-detection-rust-backtrace", "1"),
        ] {
            std::env::set_var("RUST_BACKTRACE", backtrace);
            let pool = pool_core::Pool::builder()
                .leak_detection_threshold(Some(Duration::from_secs(60)))
                .build(NoopManager)
                .expect("pool-core pool");
            per_cycle_rows.push((
                name,
                per_cycle(cycles, || drop(black_box(pool.get().unwrap()))),
            ));
        }
        match original {
            Some(v) => std::env::set_var("RUST_BACKTRACE", v),
            None => std::env::remove_var("RUST_BACKTRACE"),
        }
        let pool = r2d2::Pool::builder().build(R2d2Noop).expect("r2d2 pool");
        per_cycle_rows.push((
            "r2d2",
            per_cycle(cycles, || drop(black_box(pool.get().unwrap()))),
        ));
        let pool = MutexPool::new(10);
        per_cycle_rows.push((
            "mutex-vec",
            per_cycle(cycles, || drop(black_box(pool.get()))),
        ));
    }

    // Warm up process-wide lazy state (thread registries, logging, …) first.
    drop(ours(16));
    drop(r2d2_pool(16));
    let per_conn = |a: i64, b: i64| (b - a) as f64 / f64::from(m - n);
    let bookkeeping = [
        (
            "pool-core",
            per_conn(live_bytes(|| ours(n)), live_bytes(|| ours(m))),
        ),
        (
            "r2d2",
            per_conn(live_bytes(|| r2d2_pool(n)), live_bytes(|| r2d2_pool(m))),
        ),
        (
            "mutex-vec",
            per_conn(
                live_bytes(|| MutexPool::new(n as usize)),
                live_bytes(|| MutexPool::new(m as usize)),
            ),
        ),
    ];

    let mut rows = vec![vec![
        "pool".to_string(),
        "allocs / cycle".into(),
        "bytes / cycle".into(),
    ]];
    for (name, (allocs, bytes)) in &per_cycle_rows {
        rows.push(vec![
            name.to_string(),
            format!("{allocs:.3}"),
            format!("{bytes:.1}"),
        ]);
    }
    println!("\nheap allocations per get + return (one thread, after warm-up, {cycles} cycles)");
    report::print_table(&rows);
    let mut rows = vec![vec!["pool".to_string(), "bytes / connection".into()]];
    for (name, bytes) in &bookkeeping {
        rows.push(vec![name.to_string(), format!("{bytes:.1}")]);
    }
    println!("\nlive heap bytes per pooled no-op connection (pool of {n} vs {m})");
    report::print_table(&rows);
    type Conn = pool_core::PooledConnection<'static, NoopManager>;
    let handle = std::mem::size_of::<Conn>();
    let result = std::mem::size_of::<Result<Conn, pool_core::Error>>();
    println!(
        "\nsize_of PooledConnection: {handle} B; Result<PooledConnection, Error> (what get() returns): {result} B"
    );

    if args.bench {
        let per_cycle_json: serde_json::Map<_, _> = per_cycle_rows
            .iter()
            .map(|(name, (allocs, bytes))| {
                (
                    name.to_string(),
                    json!({ "allocs": allocs, "bytes": bytes }),
                )
            })
            .collect();
        let bookkeeping_json: serde_json::Map<_, _> = bookkeeping
            .iter()
            .map(|(name, bytes)| (name.to_string(), json!(bytes)))
            .collect();
        report::write_summary(
            "memory",
            &json!({
                "cycles": cycles,
                "per_cycle": per_cycle_json,
                "sizes": [n, m],
                "bytes_per_connection": bookkeeping_json,
                "size_of_pooled_connection": handle,
                "size_of_get_result": result,
            }),
        );
    }
}
