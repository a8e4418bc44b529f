//! A fast, fair, observable connection pool for blocking Rust programs, in the
//! style of HikariCP.
//!
//! * **Borrowing is one compare-and-swap** on the common path: a thread first
//!   tries the connections it returned most recently, then scans the pool, and
//!   only then waits in a first-come, first-served queue. Running threads may
//!   take a returned connection ahead of waiters only until the oldest waiter
//!   has waited a short bound (`BARGE_FOR`, 200 µs); from then on returned
//!   connections are handed to the oldest waiter directly.
//! * **Connections are opened on a background thread**, one at a time, and
//!   only while still needed, so a burst of borrowers does not turn into a
//!   burst of connects; failed connects are retried with backoff, and their
//!   error is what a timed-out borrower is told.
//! * **Housekeeping** (idle timeout, max lifetime with random variance,
//!   keepalives, `min_idle`) runs on its own thread, which sleeps until the
//!   next deadline.
//! * **Nothing is lost**: a connection is always idle, lent, or closed exactly
//!   once; a connection returned during a panic is closed, not reused.
//!
//! ```
//! use pool_core::{ManageConnection, Pool};
//! use std::time::Duration;
//!
//! // A manager says how to open and check connections (the pool-postgres and
//! // pool-mysql crates provide real ones).
//! struct Db;
//! impl ManageConnection for Db {
//!     type Connection = String;
//!     type Error = std::io::Error;
//!     fn connect(&self) -> Result<String, std::io::Error> { Ok("connection".into()) }
//!     fn is_valid(&self, _: &mut String, _: Duration) -> Result<(), std::io::Error> { Ok(()) }
//!     fn has_broken(&self, _: &mut String) -> bool { false }
//! }
//!
//! let pool = Pool::builder().name("app").max_size(4).build(Db)?;
//! let conn = pool.get()?; // returned to the pool when dropped
//! assert_eq!(*conn, "connection");
//! # Ok::<(), pool_core::Error>(())
//! ```

#![warn(missing_docs)]
// docs.rs (`--cfg docsrs`, nightly): badge the items behind features
// (`r2d2`, `metrics`, `diesel`) with the feature they need; not the loom build's cfg.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(docsrs, doc(auto_cfg(hide(pool_loom))))]

// Under loom the whole pool is compiled (its protocol atomics and locks
// come from `sync`), and the models drive it without its threads.
mod bag;
mod clock;
mod sync;

mod adaptive;
pub mod capacity;
mod config;
mod credentials;
pub mod deadline;
#[cfg(all(feature = "diesel", not(pool_loom)))]
pub mod diesel;
mod error;
mod extensions;
mod info;
mod limits;
mod manager;
mod observe;
mod pool;
#[cfg(all(feature = "r2d2", not(pool_loom)))]
pub mod r2d2;
mod stamps;
mod types;
pub mod url_params;

pub use adaptive::AdaptiveSize;
pub use config::Config;
pub use credentials::{
    Credentials, CredentialsError, CredentialsFailed, ProvideCredentials, SharedCredentials,
};
pub use error::{Error, ErrorChain, SharedError};
pub use extensions::Extensions;
pub use info::{ConnectionInfo, HookContext};
pub use limits::{
    DEFAULT_PARALLEL_CONNECTS, MAX_DURATION, MAX_NAME_LEN, MAX_PARALLEL_CONNECTS, MAX_SIZE_LIMIT,
    MIN_COARSE_DURATION, MIN_HEALTH_WINDOW, MIN_TIMEOUT,
};
pub use manager::{ConnectFailure, ManageConnection};
pub use observe::events::{
    AcquireEvent, CheckinEvent, CheckoutEvent, CustomizeConnection, Customized, HandleEvent,
    ReleaseEvent, TimeoutEvent,
};
pub use observe::health::{Alert, Health, HealthStatus, HealthThresholds};
pub use observe::leak::LeakReport;
pub use observe::metrics::{ClosedCounts, Distribution, Metrics};
pub use pool::{Builder, OwnedConnection, Pool, PooledConnection, RunError};
pub use types::{CloseReason, State};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;

/// The example of `docs/adaptive.md`, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/adaptive.md")]
struct AdaptiveDoctests;
