//! Starts the example service and drives it with concurrent clients.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

#[test]
fn concurrent_clients_are_served_through_a_small_pool() {
    let service = pool_examples::Service::start("127.0.0.1:0", 4).unwrap();
    let addr = service.addr();
    std::thread::scope(|s| {
        for t in 0..16 {
            s.spawn(move || {
                for i in 0..20 {
                    let path = if i % 4 == 0 {
                        "/transfer".to_string()
                    } else {
                        format!("/items/{}", t * 100 + i)
                    };
                    let (status, body) = get(addr, &path);
                    assert_eq!(status, 200, "{path}: {body}");
                    assert!(body.starts_with('{'), "{body}");
                }
            });
        }
    });
    let stats = service.db().stats();
    assert!(stats.peak_open <= 4, "{stats}");
    assert_eq!(stats.violations(), 0, "{stats}");

    let (status, metrics) = get(addr, "/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("pool_connections_total{pool=\"http\"} 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("# TYPE pool_connections_active gauge"),
        "{metrics}"
    );
    let (status, health) = get(addr, "/health");
    assert_eq!((status, health.starts_with("ok")), (200, true), "{health}");
    assert_eq!(get(addr, "/nope").0, 404);

    let db = service.db().clone();
    service.stop();
    assert!(
        db.wait_until(Duration::from_secs(2), |s| s.open == 0),
        "{}",
        db.stats()
    );
}
