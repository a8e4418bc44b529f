//! The audit counters a harness checks.

use std::time::Duration;

use pool_sim::SimDb;

fn db() -> SimDb {
    SimDb::builder().connect_latency(Duration::ZERO).build()
}

#[test]
fn open_peak_opened_closed() {
    let db = db();
    let a = db.connect().unwrap();
    let b = db.connect().unwrap();
    let c = db.connect().unwrap();
    drop(b);
    let stats = db.stats();
    assert_eq!(stats.open, 2);
    assert_eq!(db.open_count(), 2);
    assert_eq!(stats.peak_open, 3);
    assert_eq!((stats.opened, stats.closed), (3, 1));
    assert_eq!(db.open_ids(), vec![a.id(), c.id()]);

    db.reset_peak();
    assert_eq!(db.stats().peak_open, 2);
    c.close();
    drop(a);
    let stats = db.stats();
    assert_eq!((stats.open, stats.closed, stats.graceful_closes), (0, 3, 1));
    assert_eq!(stats.violations(), 0);
    db.verify_all_closed().unwrap();
}

#[test]
fn verify_all_closed_names_what_is_wrong() {
    let db = db();
    let conn = db.connect().unwrap();
    let err = db.verify_all_closed().unwrap_err();
    assert!(err.contains(&format!("ids [{}]", conn.id())), "{err}");
    assert!(err.contains("opened 1 connections but closed 0"), "{err}");
}

#[test]
fn clones_share_one_server() {
    let db = db();
    let other = db.clone();
    let _conn = other.connect().unwrap();
    assert_eq!(db.stats().opened, 1);
}

#[test]
fn detached_connections_stay_open_until_dropped() {
    let db = db();
    let conn = db.connect().unwrap();
    let moved = std::thread::spawn(move || conn).join().unwrap();
    assert_eq!(db.stats().open, 1);
    drop(moved);
    assert_eq!(db.stats().open, 0);
}

#[test]
fn wait_until_times_out() {
    let db = db();
    assert!(!db.wait_until(Duration::from_millis(5), |s| s.open == 1));
    assert!(db.wait_until(Duration::from_millis(5), |s| s.open == 0));
}

#[test]
fn stats_display_mentions_every_counter() {
    let db = db();
    drop(db.connect().unwrap());
    let text = db.stats().to_string();
    for word in [
        "open",
        "peak",
        "opened",
        "closed twice",
        "concurrent use",
        "resets",
    ] {
        assert!(text.contains(word), "{text}");
    }
    assert!(format!("{db:?}").contains("SimDb"));
}
