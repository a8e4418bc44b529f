//! [`Extensions`]: a typed map of the user's data about one connection,
//! kept in the connection's seat across loans and dropped when the
//! connection is closed.

use std::any::{Any, TypeId};
use std::fmt;

/// The user's data about one pooled connection, one value per type (like
/// `http::Extensions`): it travels with the connection from loan to loan,
/// and is dropped when the pool closes the connection.
///
/// Reach it from a loan ([`PooledConnection::extensions`](crate::PooledConnection::extensions),
/// [`extensions_mut`](crate::PooledConnection::extensions_mut)) or from a
/// checkout or checkin hook ([`HookContext::extensions_mut`](crate::HookContext::extensions_mut)).
/// An empty map allocates nothing; the first `insert` does.
///
/// ```
/// use pool_core::{ManageConnection, Pool};
/// # use std::time::Duration;
/// # struct M;
/// # impl ManageConnection for M {
/// #     type Connection = ();
/// #     type Error = std::io::Error;
/// #     fn connect(&self) -> Result<(), std::io::Error> { Ok(()) }
/// #     fn is_valid(&self, _: &mut (), _: Duration) -> Result<(), std::io::Error> { Ok(()) }
/// #     fn has_broken(&self, _: &mut ()) -> bool { false }
/// # }
///
/// /// The tenant this session's `search_path` was last set for.
/// struct Tenant(&'static str);
///
/// let pool = Pool::builder().max_size(1).build(M)?;
/// {
///     let mut conn = pool.get()?;
///     assert!(conn.extensions().get::<Tenant>().is_none());
///     // ... SET search_path TO acme ...
///     conn.extensions_mut().insert(Tenant("acme"));
/// }
/// // The same connection, lent again: its data came along.
/// let conn = pool.get()?;
/// assert_eq!(conn.extensions().get::<Tenant>().map(|t| t.0), Some("acme"));
/// # Ok::<(), pool_core::Error>(())
/// ```
#[derive(Default)]
pub struct Extensions {
    /// Few entries: a vector searched by type beats a hash map, and an
    /// empty `Vec` holds no allocation.
    entries: Vec<(TypeId, Box<dyn Any + Send + Sync>)>,
}

impl Extensions {
    /// An empty map (allocates nothing).
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores `value`, returning the value of its type stored before.
    ///
    /// ```
    /// let mut ext = pool_core::Extensions::new();
    /// assert_eq!(ext.insert(5u32), None);
    /// assert_eq!(ext.insert(6u32), Some(5));
    /// ```
    pub fn insert<T: Send + Sync + 'static>(&mut self, value: T) -> Option<T> {
        match self.get_mut::<T>() {
            Some(old) => Some(std::mem::replace(old, value)),
            None => {
                self.entries.push((TypeId::of::<T>(), Box::new(value)));
                None
            }
        }
    }

    /// The value of type `T`, if one is stored.
    ///
    /// ```
    /// let mut ext = pool_core::Extensions::new();
    /// ext.insert("ready");
    /// assert_eq!(ext.get::<&str>(), Some(&"ready"));
    /// assert_eq!(ext.get::<u8>(), None);
    /// ```
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.entries
            .iter()
            .find(|(id, _)| *id == TypeId::of::<T>())
            .and_then(|(_, v)| v.downcast_ref())
    }

    /// The value of type `T`, mutably, if one is stored.
    ///
    /// ```
    /// let mut ext = pool_core::Extensions::new();
    /// ext.insert(1u64);
    /// *ext.get_mut::<u64>().unwrap() += 1;
    /// assert_eq!(ext.get::<u64>(), Some(&2));
    /// ```
    pub fn get_mut<T: Send + Sync + 'static>(&mut self) -> Option<&mut T> {
        self.entries
            .iter_mut()
            .find(|(id, _)| *id == TypeId::of::<T>())
            .and_then(|(_, v)| v.downcast_mut())
    }

    /// The value of type `T`, stored first from `make()` if there is none.
    ///
    /// ```
    /// let mut ext = pool_core::Extensions::new();
    /// *ext.get_or_insert_with(|| 0u32) += 1;
    /// *ext.get_or_insert_with(|| 0u32) += 1;
    /// assert_eq!(ext.get::<u32>(), Some(&2));
    /// ```
    pub fn get_or_insert_with<T: Send + Sync + 'static>(
        &mut self,
        make: impl FnOnce() -> T,
    ) -> &mut T {
        if self.get::<T>().is_none() {
            self.entries.push((TypeId::of::<T>(), Box::new(make())));
        }
        self.get_mut::<T>().expect("stored just above")
    }

    /// Removes and returns the value of type `T`.
    ///
    /// ```
    /// let mut ext = pool_core::Extensions::new();
    /// ext.insert('x');
    /// assert_eq!(ext.remove::<char>(), Some('x'));
    /// assert!(ext.is_empty());
    /// ```
    pub fn remove<T: Send + Sync + 'static>(&mut self) -> Option<T> {
        let at = self
            .entries
            .iter()
            .position(|(id, _)| *id == TypeId::of::<T>())?;
        let (_, value) = self.entries.swap_remove(at);
        value.downcast().ok().map(|b| *b)
    }

    /// How many values are stored.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Drops every value (and the map's allocation).
    pub fn clear(&mut self) {
        self.entries = Vec::new();
    }
}

impl fmt::Debug for Extensions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Extensions")
            .field("len", &self.entries.len())
            .finish_non_exhaustive()
    }
}
