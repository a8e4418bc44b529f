//! Starts the example service and drives it with concurrent clients: on the
//! simulated database, then on throwaway PostgreSQL and MariaDB servers.

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

/// 16 clients × 20 requests through a pool of 4, then /metrics, /health, 404.
fn drive(service: &pool_examples::Service) {
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
    let (status, metrics) = get(addr, "/metrics");
    assert_eq!(status, 200);
    for line in [
        "pool_connections_max{pool=\"http\"} 4",
        "pool_connections_acquired_total{pool=\"http\"} 320",
        "# TYPE pool_acquire_seconds histogram",
    ] {
        assert!(metrics.contains(line), "{line} missing in\n{metrics}");
    }
    let (status, health) = get(addr, "/health");
    assert_eq!(status, 200, "{health}");
    assert_eq!(get(addr, "/nope").0, 404);
}

#[test]
fn concurrent_clients_are_served_through_a_small_pool() {
    let service = pool_examples::Service::start("127.0.0.1:0", 4).unwrap();
    drive(&service);
    let pool_examples::Backend::Sim(_, db) = service.backend().clone() else {
        unreachable!("no URL: the simulated database")
    };
    let stats = db.stats();
    assert!(stats.peak_open <= 4, "{stats}");
    assert_eq!(stats.violations(), 0, "{stats}");
    service.stop();
    assert!(
        db.wait_until(Duration::from_secs(2), |s| s.open == 0),
        "{}",
        db.stats()
    );
}

#[test]
fn the_same_service_runs_on_postgresql_and_mariadb() {
    use pool_testkit::{MariaDbServer, PgServer};
    if pool_testkit::should_run(PgServer::binaries_available()) {
        let pg = pool_testkit::shared_pg().expect("start postgres");
        let service =
            pool_examples::Service::start_with("127.0.0.1:0", 4, Some(&pg.url())).unwrap();
        drive(&service);
        service.stop();
    }
    if pool_testkit::should_run(MariaDbServer::binaries_available()) {
        let db = pool_testkit::shared_mariadb().expect("start mariadb");
        let service =
            pool_examples::Service::start_with("127.0.0.1:0", 4, Some(&db.url())).unwrap();
        drive(&service);
        service.stop();
    }
}
