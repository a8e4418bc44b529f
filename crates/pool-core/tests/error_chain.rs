//! Errors as a user sees them through `anyhow`'s `{:#}` (the message, then
//! each source): every cause appears exactly once, and the pool's own
//! message says what happened and what to do. The connect failures here
//! are real: a TCP connect to a loopback port nobody listens on.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use pool_core::{Error, ErrorChain, ManageConnection, Pool};

/// Connects over TCP to `addr`; with a closed port, every connect is refused.
struct Tcp {
    addr: SocketAddr,
}

impl ManageConnection for Tcp {
    type Connection = TcpStream;
    type Error = std::io::Error;
    fn connect(&self) -> Result<TcpStream, std::io::Error> {
        TcpStream::connect_timeout(&self.addr, Duration::from_secs(1))
    }
    fn is_valid(&self, _: &mut TcpStream, _: Duration) -> Result<(), std::io::Error> {
        Ok(())
    }
    fn has_broken(&self, _: &mut TcpStream) -> bool {
        false
    }
}

/// A loopback address with nothing listening: bound, then closed.
fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

/// What the OS says for a refused connect, to count in the chain.
fn refused_text(addr: SocketAddr) -> String {
    TcpStream::connect(addr).unwrap_err().to_string()
}

fn chain(err: Error) -> String {
    format!("{:#}", anyhow::Error::from(err))
}

#[test]
fn a_refused_connect_at_build_shows_its_cause_once() {
    let addr = closed_port();
    let refused = refused_text(addr);
    let err = Pool::builder()
        .name("orders")
        .initialization_fail_timeout(Duration::ZERO)
        .build(Tcp { addr })
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    let top = err.to_string();
    assert!(
        top.starts_with("pool \"orders\": cannot connect to the database (")
            && top.contains("check that the database is up"),
        "{top}"
    );
    assert!(
        !top.contains(&refused),
        "the cause is repeated in the message: {top}"
    );
    let shown = chain(err.clone());
    assert_eq!(shown.matches(&refused).count(), 1, "{shown}");
    assert_eq!(shown, format!("{top}: {refused}"));
    // ErrorChain renders the same.
    assert_eq!(ErrorChain(&err).to_string(), shown);
}

#[test]
fn a_timeout_chains_the_last_connect_error_once() {
    let addr = closed_port();
    let refused = refused_text(addr);
    let pool = Pool::builder()
        .name("orders")
        .fail_fast(false)
        .connection_timeout(Duration::from_millis(300))
        .build_unchecked(Tcp { addr })
        .unwrap();
    let err = pool.get().map(|_| ()).unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(err.connect_error().is_some(), "{err:?}");
    let top = err.to_string();
    assert!(
        top.starts_with("pool \"orders\": timed out after ")
            && top.contains("while new connections were failing; fix the cause"),
        "{top}"
    );
    let shown = chain(err);
    assert_eq!(shown.matches(&refused).count(), 1, "{shown}");
    assert_eq!(shown.matches("timed out").count(), 1, "{shown}");
    assert!(shown.ends_with(&format!(": {refused}")), "{shown}");
}

#[test]
fn a_timeout_without_connect_errors_says_what_to_do() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let pool = Pool::builder()
        .max_size(1)
        .connection_timeout(Duration::from_millis(100))
        .build(Tcp {
            addr: listener.local_addr().unwrap(),
        })
        .unwrap();
    let _held = pool.get().unwrap();
    let err = pool.get().map(|_| ()).unwrap_err();
    assert!(std::error::Error::source(&err).is_none());
    let shown = chain(err);
    assert!(
        shown.contains(
            "every connection stayed in use: return connections sooner, or raise max_size"
        ),
        "{shown}"
    );
}

#[test]
fn a_config_error_names_the_setting_and_range_once() {
    let addr = closed_port();
    let err = Pool::builder()
        .max_size(0)
        .build(Tcp { addr })
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    assert!(std::error::Error::source(&err).is_none());
    let shown = chain(err.clone());
    assert_eq!(shown, err.to_string());
    assert_eq!(shown.matches("max_size").count(), 1, "{shown}");
}
