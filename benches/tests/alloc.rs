//! Target 2: once warmed up, borrowing and returning a connection allocates
//! nothing on the borrowing thread (a counting global allocator, counting per
//! thread, so the pool's background threads and other tests do not count).
//!
//! With leak detection on, see `alloc_leak_detection.rs` (it needs its own
//! process because it sets `RUST_BACKTRACE`).

use std::hint::black_box;

use benches::alloc::{self, CountingAlloc, Counts};
use benches::NoopManager;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const WARM_UP: usize = 1_000;
const CYCLES: usize = 100_000;

/// What this thread allocated while running `cycle` `CYCLES` times, after
/// `WARM_UP` untracked runs.
fn allocated_by(mut cycle: impl FnMut()) -> Counts {
    for _ in 0..WARM_UP {
        cycle();
    }
    let before = alloc::this_thread();
    for _ in 0..CYCLES {
        cycle();
    }
    alloc::this_thread().since(before)
}

fn pool(builder: pool_core::Builder) -> pool_core::Pool<NoopManager> {
    builder.build(NoopManager).expect("pool")
}

#[test]
fn the_counter_sees_allocations() {
    let counts = allocated_by(|| drop(black_box(Box::new(7u64))));
    assert_eq!(counts.allocs, CYCLES as u64);
    assert_eq!(counts.bytes_allocated, 8 * CYCLES as u64);
    assert_eq!(counts.live_bytes(), 0);
}

#[test]
fn get_and_return_allocate_nothing_with_default_settings() {
    let pool = pool(pool_core::Pool::builder());
    let counts = allocated_by(|| {
        let conn = pool.get().unwrap();
        black_box(*conn);
    });
    assert_eq!(counts, Counts::default(), "{CYCLES} get + return cycles");
}

#[test]
fn adaptive_sizing_adds_nothing_to_get_and_return() {
    // Short windows: the housekeeper samples (and may resize) while the
    // cycles run; its work is on its own thread.
    let mut sizing = pool_core::AdaptiveSize::new(1, 4);
    sizing.window = std::time::Duration::from_millis(10);
    sizing.cool_down = std::time::Duration::ZERO;
    let pool = pool(pool_core::Pool::builder().max_size(2).adaptive_size(sizing));
    let counts = allocated_by(|| {
        let conn = pool.get().unwrap();
        black_box(*conn);
    });
    assert_eq!(counts, Counts::default(), "{CYCLES} get + return cycles");
}

#[test]
fn two_loans_at_once_allocate_nothing() {
    // The second borrow misses the thread's cache on its first try and scans.
    let pool = pool(pool_core::Pool::builder().max_size(4));
    let counts = allocated_by(|| {
        let a = pool.get().unwrap();
        let b = pool.get().unwrap();
        black_box((*a, *b));
    });
    assert_eq!(
        counts,
        Counts::default(),
        "{CYCLES} double get + return cycles"
    );
}

#[test]
fn try_get_allocates_nothing() {
    let pool = pool(pool_core::Pool::builder().max_size(2));
    let counts = allocated_by(|| {
        let conn = pool.try_get().unwrap();
        black_box(*conn);
    });
    assert_eq!(
        counts,
        Counts::default(),
        "{CYCLES} try_get + return cycles"
    );
}

#[test]
fn a_large_pool_allocates_nothing_either() {
    let pool = pool(pool_core::Pool::builder().max_size(1024));
    let counts = allocated_by(|| {
        let conn = pool.get().unwrap();
        black_box(*conn);
    });
    assert_eq!(counts, Counts::default(), "{CYCLES} get + return cycles");
}

/// Hooks that count loans in the connection's extensions: the map
/// allocates once, on first use, and never again per cycle; the hooks
/// themselves add no allocation.
struct CountLoans;

impl pool_core::CustomizeConnection<u64, std::io::Error> for CountLoans {
    fn on_checkout(&self, conn: &mut u64, cx: &mut pool_core::HookContext<'_>) -> bool {
        *conn += 1;
        *cx.extensions_mut().get_or_insert_with(|| 0u64) += 1;
        true
    }
    fn on_checkin(&self, conn: &mut u64, cx: &mut pool_core::HookContext<'_>) -> bool {
        black_box(cx.info());
        *conn < u64::MAX
    }
}

#[test]
fn hooks_and_a_used_extension_map_allocate_nothing_per_cycle() {
    let pool = pool_core::Pool::builder()
        .max_size(1)
        .build(pool_core::Customized::new(NoopManager, CountLoans))
        .expect("pool");
    let counts = allocated_by(|| {
        let conn = pool.get().unwrap();
        black_box(conn.extensions().get::<u64>());
    });
    assert_eq!(counts, Counts::default(), "{CYCLES} get + return cycles");
    assert_eq!(
        pool.get().unwrap().extensions().get::<u64>(),
        Some(&((WARM_UP + CYCLES) as u64 + 1))
    );
}

#[test]
fn an_unused_extension_map_allocates_nothing() {
    let pool = pool(pool_core::Pool::builder().max_size(1));
    let counts = allocated_by(|| {
        let conn = pool.get().unwrap();
        black_box(conn.extensions().get::<String>());
        black_box(conn.extensions().is_empty());
    });
    assert_eq!(counts, Counts::default(), "{CYCLES} get + return cycles");
}
