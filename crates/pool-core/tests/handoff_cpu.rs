//! HikariCP's issues 2329 and 2398: waiters spinning at 100 % CPU during the
//! hand-off. Here more waiters than cores wait on slow returners; the process
//! must stay nearly idle. (One test in its own binary: CPU time is counted
//! for the whole process.)

mod common;

use common::TestManager;
use pool_core::Pool;
use std::time::{Duration, Instant};

/// User + system CPU time of this process.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of stat(5) (utime, stime), counted from "state" = 3.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
}

#[test]
fn waiting_burns_no_cpu() {
    let pool = Pool::builder()
        .max_size(2)
        .connection_timeout(Duration::from_secs(30))
        .build(TestManager::new())
        .unwrap();
    let waiters = 4 * std::thread::available_parallelism().map_or(2, |n| n.get());
    let cpu_before = cpu_time();
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..waiters {
            s.spawn(|| {
                for _ in 0..3 {
                    let c = pool.get().unwrap();
                    std::thread::sleep(Duration::from_millis(40)); // a slow holder
                    drop(c);
                }
            });
        }
    });
    let wall = started.elapsed();
    let cpu = cpu_time() - cpu_before;
    println!("{waiters} waiters on 2 connections: {wall:?} wall, {cpu:?} CPU");
    // Spinning waiters would burn about `wall` per core; parked ones nearly nothing.
    assert!(
        cpu < wall / 5,
        "waiters burned {cpu:?} of CPU in {wall:?} of waiting"
    );
}
