//! The per-connection cache behind
//! [`PgConnection::prepare_cached`](crate::PgConnection::prepare_cached): protocol-level
//! statements by SQL text, at most a set number, the least recently used evicted first.
//!
//! An evicted (or dropped) `postgres::Statement` closes itself on the server
//! when its last clone goes, so the cache bounds the server's statements too.

use std::collections::HashMap;

use postgres::Statement;

use crate::PostgresManager;

impl<T> PostgresManager<T> {
    /// Sets how many statements
    /// [`PgConnection::prepare_cached`](crate::PgConnection::prepare_cached) keeps per
    /// connection (default
    /// [`DEFAULT_STATEMENT_CACHE_SIZE`](crate::DEFAULT_STATEMENT_CACHE_SIZE)); past it, the
    /// least recently used is closed on the server. `0` turns the cache off
    /// (`prepare_cached` then prepares every time).
    ///
    /// ```
    /// # use pool_postgres::{PostgresManager, NoTls};
    /// let manager = PostgresManager::new("host=db".parse()?, NoTls).statement_cache_size(16);
    /// assert_eq!(manager.get_statement_cache_size(), 16);
    /// # Ok::<(), postgres::Error>(())
    /// ```
    pub fn statement_cache_size(mut self, size: usize) -> Self {
        self.statement_cache_size = size;
        self
    }

    /// The statement cache size (see
    /// [`statement_cache_size`](Self::statement_cache_size)).
    pub fn get_statement_cache_size(&self) -> usize {
        self.statement_cache_size
    }
}

/// Statements by SQL text, each with the tick of its last use.
pub(crate) struct StatementCache {
    capacity: usize,
    tick: u64,
    entries: HashMap<String, (Statement, u64)>,
}

impl StatementCache {
    pub(crate) fn new(capacity: usize) -> Self {
        StatementCache {
            capacity,
            tick: 0,
            entries: HashMap::new(),
        }
    }

    /// The cached statement for `sql`, marked as just used.
    pub(crate) fn get(&mut self, sql: &str) -> Option<Statement> {
        self.tick += 1;
        let tick = self.tick;
        self.entries.get_mut(sql).map(|(statement, used)| {
            *used = tick;
            statement.clone()
        })
    }

    /// Keeps `statement` for `sql`, evicting the least recently used one
    /// when full (and returning it). With capacity 0 nothing is kept.
    pub(crate) fn insert(&mut self, sql: &str, statement: Statement) -> Option<Statement> {
        if self.capacity == 0 {
            return None;
        }
        let mut evicted = None;
        if self.entries.len() >= self.capacity && !self.entries.contains_key(sql) {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(sql, _)| sql.clone());
            if let Some(oldest) = oldest {
                evicted = self.entries.remove(&oldest).map(|(statement, _)| statement);
            }
        }
        self.tick += 1;
        self.entries.insert(sql.to_owned(), (statement, self.tick));
        evicted
    }

    /// Whether `statement` is one of the cached ones.
    pub(crate) fn holds(&self, sql: &str) -> bool {
        self.entries.contains_key(sql)
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }
}
