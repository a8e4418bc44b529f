//! A simulated database for testing and benchmarking the pool.
//!
//! [`SimDb`] behaves like a database server seen from a connection pool, in
//! process and without I/O:
//!
//! - **cost**: connects take 2 ms (optionally with jitter) and each round
//!   trip 50 µs by default; both can be changed at run time;
//! - **limits**: a server-side connection limit; connects beyond it fail with
//!   "too many connections";
//! - **sessions**: transactions and session variables, which the pool's reset
//!   must clean between borrowers;
//! - **failures**, switchable at run time: refuse connects, fail the next N
//!   connects, break all or a random fraction of the open connections, add
//!   latency, restart (break everything and refuse for a while), and a black
//!   hole in which connects, queries and validations get no answer until their
//!   timeout;
//! - **audit counters**: connections open now and at peak, opened, closed,
//!   closed twice, used by two holders at once, and the ids open now.
//!
//! [`SimManager`] plugs it into a [`pool_core::Pool`].
//!
//! # Timing
//!
//! Waits of 1 ms and more use `thread::sleep`. Shorter waits (the default
//! 50 µs query latency) also sleep by default, which on Linux oversleeps by
//! roughly 50–100 µs but costs no CPU, like a client blocked on a socket. With
//! [`SimDbBuilder::precise_short_waits`] they spin with `thread::yield_now`
//! instead: precise, but each waiting thread keeps a core busy.
//!
//! # Example
//!
//! ```
//! use pool_sim::{SimDb, SimError};
//! use std::time::Duration;
//!
//! let db = SimDb::builder().max_connections(2).build();
//! let mut a = db.connect().unwrap();
//! let _b = db.connect().unwrap();
//! assert_eq!(db.connect().unwrap_err(), SimError::TooManyConnections { limit: 2 });
//!
//! a.begin().unwrap();
//! a.query("INSERT INTO t VALUES (1)").unwrap();
//! a.commit().unwrap();
//!
//! db.restart(Duration::from_millis(10));
//! assert!(a.query("SELECT 1").is_err());
//! drop(a);
//! assert_eq!(db.stats().closed, 1);
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod conn;
mod db;
mod error;
mod manager;
mod wait;

pub use conn::SimConn;
pub use db::{SimDb, SimDbBuilder, SimStats};
pub use error::SimError;
pub use manager::SimManager;
