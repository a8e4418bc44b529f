//! Dropping a FaultProxy stops all of its threads (only test in this binary,
//! so the process-wide thread count is meaningful).

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::{connect, round_trip, EchoServer};
use pool_testkit::{FaultMode, FaultProxy};

fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .map(|s| s.trim().to_string())
        .collect()
}

#[test]
fn drop_joins_all_threads() {
    let baseline = thread_names().len();
    let echo = EchoServer::start();
    let proxy = FaultProxy::start(echo.addr()).unwrap();
    let mut conns: Vec<_> = (0..4)
        .map(|_| connect(proxy.addr(), Duration::from_secs(5)).unwrap())
        .collect();
    for c in &mut conns {
        assert_eq!(round_trip(c, b"ping").unwrap(), b"ping");
    }
    proxy.set_mode(FaultMode::Blackhole);
    let _hole = connect(proxy.addr(), Duration::from_secs(5)).unwrap();
    // connect() returns before the proxy has accepted: wait for it.
    let t = Instant::now();
    while proxy.active_connections() < 5 {
        assert!(t.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(5));
    }
    proxy.set_mode(FaultMode::Latency(Duration::from_secs(30)));
    // This byte is held in a 30 s latency sleep inside the proxy.
    conns[0].write_all(b"z").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let with_proxy = thread_names();
    let proxy_threads = with_proxy
        .iter()
        .filter(|n| n.starts_with("ptk-proxy"))
        .count();
    // Acceptor + 2 per proxied connection + 1 for the black hole.
    assert_eq!(proxy_threads, 1 + 4 * 2 + 1, "{with_proxy:?}");

    // Dropping must not wait for the 30 s latency sleep either.
    let t = Instant::now();
    drop(proxy);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    // join() returns when a thread has finished; the kernel may list it in
    // /proc/self/task for a moment longer, hence the short polling.
    wait_until("proxy threads gone", || {
        !thread_names().iter().any(|n| n.starts_with("ptk-proxy"))
    });
    drop(conns);
    drop(echo);
    wait_until("thread count back to baseline", || {
        thread_names().len() == baseline
    });
}

fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "{what}: {:?}",
            thread_names()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
