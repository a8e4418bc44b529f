//! Target 2 with leak detection on: once warmed up, borrowing and returning
//! allocates nothing on the borrowing thread, as long as `RUST_BACKTRACE` is
//! unset or `0`. (With `RUST_BACKTRACE` set, pool-core captures a backtrace
//! per loan, by design, which allocates.)
//!
//! A file of its own, with a single test: it sets `RUST_BACKTRACE` for the
//! whole process, which must not race with another test reading it.

use std::hint::black_box;
use std::time::Duration;

use benches::alloc::{self, CountingAlloc, Counts};
use benches::NoopManager;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

#[test]
fn get_and_return_allocate_nothing_with_leak_detection() {
    // The only test in this process: nothing else reads the environment now.
    std::env::set_var("RUST_BACKTRACE", "0");
    let pool = pool_core::Pool::builder()
        .leak_detection_threshold(Some(Duration::from_secs(60)))
        .build(NoopManager)
        .expect("pool");
    let cycle = || {
        let conn = pool.get().unwrap();
        black_box(*conn);
    };
    for _ in 0..1_000 {
        cycle();
    }
    let before = alloc::this_thread();
    for _ in 0..100_000 {
        cycle();
    }
    let counts = alloc::this_thread().since(before);
    assert_eq!(counts, Counts::default(), "100000 get + return cycles");
}
