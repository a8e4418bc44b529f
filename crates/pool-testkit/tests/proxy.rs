//! FaultProxy modes against a plain TCP echo server.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener};
use std::time::{Duration, Instant};

use common::{connect, round_trip, EchoServer};
use pool_testkit::{FaultMode, FaultProxy};

const SHORT: Duration = Duration::from_millis(300);
const LONG: Duration = Duration::from_secs(5);

/// Waits until the proxy reports `n` active connections.
fn wait_active(p: &FaultProxy, n: usize) {
    let start = Instant::now();
    while p.active_connections() != n {
        assert!(
            start.elapsed() < LONG,
            "active_connections stuck at {}",
            p.active_connections()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Asserts that reading from `s` fails with a connection reset.
fn expect_reset(s: &mut std::net::TcpStream) {
    s.set_read_timeout(Some(LONG)).unwrap();
    let mut buf = [0u8; 16];
    match s.read(&mut buf) {
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}"),
        Ok(n) => panic!("expected a reset, read {n} bytes"),
    }
}

#[test]
fn pass_through_half_close_and_counters() {
    let echo = EchoServer::start();
    let proxy = FaultProxy::start(echo.addr()).unwrap();
    assert_eq!(proxy.upstream(), echo.addr());
    assert!(proxy.addr().ip().is_loopback());
    assert_eq!(proxy.mode(), FaultMode::PassThrough);
    assert_eq!(proxy.accepted_connections(), 0);

    let mut a = connect(proxy.addr(), LONG).unwrap();
    let mut b = connect(proxy.addr(), LONG).unwrap();
    assert_eq!(round_trip(&mut a, b"hello").unwrap(), b"hello");
    let big = vec![7u8; 200_000];
    assert_eq!(round_trip(&mut b, &big).unwrap(), big);
    assert_eq!(proxy.accepted_connections(), 2);
    wait_active(&proxy, 2);

    // Half close: our FIN reaches the echo server, which closes; we see EOF.
    a.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    a.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    drop(b);
    wait_active(&proxy, 0);
}

#[test]
fn latency_is_added_per_chunk() {
    let echo = EchoServer::start();
    let proxy = FaultProxy::start(echo.addr()).unwrap();
    let mut s = connect(proxy.addr(), LONG).unwrap();
    round_trip(&mut s, b"warm").unwrap();

    proxy.set_mode(FaultMode::Latency(Duration::from_millis(150)));
    let t = Instant::now();
    assert_eq!(round_trip(&mut s, b"slow").unwrap(), b"slow");
    // One chunk each way.
    assert!(
        t.elapsed() >= Duration::from_millis(290),
        "{:?}",
        t.elapsed()
    );

    proxy.set_mode(FaultMode::PassThrough);
    let t = Instant::now();
    round_trip(&mut s, b"fast").unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(140),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn blackhole_swallows_bytes_but_keeps_sockets_open() {
    let echo = EchoServer::start();
    let proxy = FaultProxy::start(echo.addr()).unwrap();
    let mut old = connect(proxy.addr(), SHORT).unwrap();
    round_trip(&mut old, b"before").unwrap();

    proxy.set_mode(FaultMode::Blackhole);
    // Existing connection: writes succeed, nothing comes back, no EOF/reset.
    old.write_all(b"lost").unwrap();
    let mut buf = [0u8; 16];
    let e = old.read(&mut buf).unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{e}"
    );
    // New connection: accepted, then silence.
    let mut new = connect(proxy.addr(), SHORT).unwrap();
    new.write_all(b"hello?").unwrap();
    let e = new.read(&mut buf).unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{e}"
    );
    assert_eq!(proxy.accepted_connections(), 2);
    wait_active(&proxy, 2);

    // Back to normal: fresh connections work again.
    proxy.set_mode(FaultMode::PassThrough);
    let mut fresh = connect(proxy.addr(), LONG).unwrap();
    assert_eq!(round_trip(&mut fresh, b"after").unwrap(), b"after");
}

#[test]
fn reset_mode_resets_existing_and_new_connections() {
    let echo = EchoServer::start();
    let proxy = FaultProxy::start(echo.addr()).unwrap();
    let mut a = connect(proxy.addr(), LONG).unwrap();
    let mut b = connect(proxy.addr(), LONG).unwrap();
    round_trip(&mut a, b"a").unwrap();
    round_trip(&mut b, b"b").unwrap();

    proxy.set_mode(FaultMode::Reset);
    assert_eq!(proxy.active_connections(), 0);
    expect_reset(&mut a);
    expect_reset(&mut b);
    // New connections are accepted and reset right away (the RST may even
    // arrive while the client is still setting socket options).
    match connect(proxy.addr(), LONG) {
        Ok(mut c) => expect_reset(&mut c),
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}"),
    }
    assert_eq!(proxy.accepted_connections(), 3);

    proxy.set_mode(FaultMode::PassThrough);
    let mut d = connect(proxy.addr(), LONG).unwrap();
    assert_eq!(round_trip(&mut d, b"ok").unwrap(), b"ok");
}

#[test]
fn reset_all_is_one_shot() {
    let echo = EchoServer::start();
    let proxy = FaultProxy::start(echo.addr()).unwrap();
    let mut a = connect(proxy.addr(), LONG).unwrap();
    round_trip(&mut a, b"a").unwrap();
    proxy.reset_all();
    expect_reset(&mut a);
    assert_eq!(proxy.mode(), FaultMode::PassThrough);
    let mut b = connect(proxy.addr(), LONG).unwrap();
    assert_eq!(round_trip(&mut b, b"b").unwrap(), b"b");
}

#[test]
fn refuse_mode_refuses_new_connections_only() {
    let echo = EchoServer::start();
    let proxy = FaultProxy::start(echo.addr()).unwrap();
    let port = proxy.port();
    let mut old = connect(proxy.addr(), LONG).unwrap();
    round_trip(&mut old, b"x").unwrap();

    proxy.set_mode(FaultMode::Refuse);
    let e = connect(proxy.addr(), LONG).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}");
    // The existing connection still works.
    assert_eq!(round_trip(&mut old, b"still").unwrap(), b"still");

    proxy.set_mode(FaultMode::PassThrough);
    assert_eq!(proxy.port(), port);
    let mut new = connect(proxy.addr(), LONG).unwrap();
    assert_eq!(round_trip(&mut new, b"back").unwrap(), b"back");
    assert_eq!(proxy.accepted_connections(), 2);
}

#[test]
fn upstream_down_resets_client() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let proxy = FaultProxy::start(port).unwrap();
    match connect(proxy.addr(), LONG) {
        Ok(mut s) => expect_reset(&mut s),
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}"),
    }
}
