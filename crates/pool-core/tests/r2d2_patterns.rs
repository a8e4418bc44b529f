//! The r2d2 patterns a user's program is made of, each compiling here with
//! at most the rename the README's migration table gives (issue 20, item 3):
//! a connection type alias, a loan returned from a method of a struct that
//! holds the pool, a loan sent to another thread over a channel, and a loan
//! stored in a struct.

mod common;

use std::sync::mpsc;
use std::thread;

use common::TestManager;
use pool_core::{OwnedConnection, Pool, PooledConnection};

/// r2d2: `type Conn = r2d2::PooledConnection<M>;`
type Conn = OwnedConnection<TestManager>;

/// A repository that holds the pool and lends connections from a method.
struct Repo {
    pool: Pool<TestManager>,
}

impl Repo {
    /// r2d2: `fn conn(&self) -> Result<PooledConnection<M>, r2d2::Error>`;
    /// here the loan borrows `self` (no reference count per loan).
    fn conn(&self) -> Result<PooledConnection<'_, TestManager>, pool_core::Error> {
        self.pool.get()
    }

    /// The same, for a loan that must outlive `&self`.
    fn owned(&self) -> Result<Conn, pool_core::Error> {
        self.pool.get_owned()
    }
}

/// A struct that keeps a loan, as r2d2 users store `PooledConnection<M>`.
struct Session {
    conn: Conn,
}

#[test]
fn r2d2_patterns_compile_and_work_with_the_documented_renames() {
    let repo = Repo {
        pool: Pool::builder()
            .max_size(2)
            .build(TestManager::new())
            .unwrap(),
    };
    {
        let conn = repo.conn().unwrap();
        assert!(conn.id() > 0);
    }
    // Sent to another thread over a channel.
    let (tx, rx) = mpsc::channel::<Conn>();
    tx.send(repo.owned().unwrap()).unwrap();
    let id = thread::spawn(move || rx.recv().unwrap().id())
        .join()
        .unwrap();
    assert!(id > 0);
    // Stored in a struct that outlives the borrow of `repo`.
    let session = Session {
        conn: repo.owned().unwrap(),
    };
    let held = session.conn.id();
    drop(repo); // the owned loan keeps the pool's bookkeeping alive
    assert!(held > 0);
    drop(session);
}
