//! What an operator sees: run with
//! `RUST_LOG=info cargo run -p pool-core --example observe`.
//!
//! A pool of 4 over a toy manager serves 8 worker threads for a second; one
//! worker holds its connection too long and trips leak detection. Then it
//! prints the health verdict and part of the Prometheus output.

use pool_core::{HealthThresholds, ManageConnection, Pool};
use std::time::Duration;

struct Toy;

impl ManageConnection for Toy {
    type Connection = ();
    type Error = std::io::Error;
    fn connect(&self) -> Result<(), std::io::Error> {
        std::thread::sleep(Duration::from_millis(2));
        Ok(())
    }
    fn is_valid(&self, _: &mut (), _: Duration) -> Result<(), std::io::Error> {
        Ok(())
    }
    fn has_broken(&self, _: &mut ()) -> bool {
        false
    }
}

fn main() -> Result<(), pool_core::Error> {
    env_logger::init();
    let pool = Pool::builder()
        .name("orders")
        .max_size(4)
        .leak_detection_threshold(Some(Duration::from_millis(300)))
        .health_thresholds(HealthThresholds {
            window: Duration::from_secs(5),
            ..HealthThresholds::default()
        })
        .build(Toy)?;
    std::thread::scope(|s| {
        for worker in 0..8 {
            let pool = &pool;
            std::thread::Builder::new()
                .name(format!("worker-{worker}"))
                .spawn_scoped(s, move || {
                    let end = std::time::Instant::now() + Duration::from_secs(1);
                    while std::time::Instant::now() < end {
                        let conn = pool.get().unwrap();
                        let hold = if worker == 7 { 600 } else { 3 };
                        std::thread::sleep(Duration::from_millis(hold));
                        drop(conn);
                    }
                })
                .unwrap();
        }
    });
    println!("{}\n", pool.health());
    let text = pool.metrics().to_prometheus();
    for line in text.lines().filter(|l| {
        l.starts_with("pool_connections_total")
            || l.starts_with("pool_connections_acquired_total")
            || l.starts_with("pool_acquire_timeouts_total")
            || l.starts_with("pool_leaks_detected_total")
            || (l.starts_with("pool_acquire_seconds_bucket")
                && ["\"0.001\"", "\"0.01\"", "\"+Inf\""]
                    .iter()
                    .any(|le| l.contains(le)))
            || l.starts_with("pool_acquire_seconds_sum")
            || l.starts_with("pool_acquire_seconds_count")
    }) {
        println!("{line}");
    }
    Ok(())
}
