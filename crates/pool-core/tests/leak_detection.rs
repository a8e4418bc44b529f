//! Leak detection: one warning naming the call site and thread when a loan
//! passes the threshold, one info line when it comes back, and `leaks()`.

mod common;

use common::{eventually, TestManager};
use pool_core::Pool;
use std::sync::Mutex;
use std::time::Duration;

/// Captures every log record of this test binary.
struct Capture(Mutex<Vec<(log::Level, String)>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        self.0
            .lock()
            .unwrap()
            .push((record.level(), record.args().to_string()));
    }
    fn flush(&self) {}
}

static LOG: Capture = Capture(Mutex::new(Vec::new()));

fn lines(level: log::Level, needle: &str) -> Vec<String> {
    LOG.0
        .lock()
        .unwrap()
        .iter()
        .filter(|(l, m)| *l == level && m.contains(needle))
        .map(|(_, m)| m.clone())
        .collect()
}

#[test]
fn a_long_loan_is_reported_once_and_its_return_too() {
    log::set_logger(&LOG).unwrap();
    log::set_max_level(log::LevelFilter::Trace);
    let pool = Pool::builder()
        .name("leaky")
        .max_size(2)
        .leak_detection_threshold(Some(Duration::from_millis(50)))
        .build(TestManager::new())
        .unwrap();

    let (conn, line) = std::thread::Builder::new()
        .name("slow-holder".into())
        .spawn({
            let pool = pool.clone();
            move || (pool.get_owned().unwrap(), line!())
        })
        .unwrap()
        .join()
        .unwrap();
    let id = conn.id();
    let site = format!("leak_detection.rs:{line}");

    assert!(eventually(Duration::from_secs(3), || {
        !lines(log::Level::Warn, "leak detection threshold").is_empty()
    }));
    std::thread::sleep(Duration::from_millis(150)); // more rounds: still one warning
    let warnings = lines(log::Level::Warn, "leak detection threshold");
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    let w = &warnings[0];
    assert!(
        w.starts_with(&format!(
            "pool \"leaky\": connection {id} has been lent for"
        )),
        "{w}"
    );
    assert!(w.contains("taken by thread \"slow-holder\""), "{w}");
    assert!(w.contains(&site), "{w} should name {site}");

    let leaks = pool.leaks();
    assert_eq!(leaks.len(), 1);
    assert_eq!(leaks[0].id, id);
    assert_eq!(leaks[0].thread, "slow-holder");
    assert!(leaks[0].lent_for >= Duration::from_millis(50));

    drop(conn);
    let infos = lines(log::Level::Info, "previously reported as leaked");
    assert_eq!(infos.len(), 1, "{infos:#?}");
    assert!(
        infos[0].starts_with(&format!(
            "pool \"leaky\": connection {id}, previously reported"
        )),
        "{}",
        infos[0]
    );
    assert!(pool.leaks().is_empty());

    // A short loan afterwards is not reported.
    drop(pool.get().unwrap());
    std::thread::sleep(Duration::from_millis(120));
    assert_eq!(lines(log::Level::Warn, "leak detection threshold").len(), 1);
}
