//! A counting global allocator, for the zero-allocation test and the memory
//! measurements.
//!
//! Install it in a test or bench binary with
//!
//! ```
//! #[global_allocator]
//! static ALLOC: benches::alloc::CountingAlloc = benches::alloc::CountingAlloc;
//!
//! let before = benches::alloc::this_thread();
//! let boxed = std::hint::black_box(Box::new(1u64));
//! assert_eq!(benches::alloc::this_thread().since(before).bytes_allocated, 8);
//! # drop(boxed);
//! ```
//!
//! It forwards to the system allocator and counts, both for the whole process
//! ([`global`]) and for the calling thread only ([`this_thread`]), so a test
//! can look at its own thread while the pool's background threads do what
//! they like.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// The system allocator, counting.
#[derive(Debug, Default, Clone, Copy)]
pub struct CountingAlloc;

/// Allocation counts at one moment; subtract two with [`Counts::since`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Calls to `alloc`, `alloc_zeroed` and `realloc`.
    pub allocs: u64,
    /// Calls to `dealloc` (and the freeing half of `realloc`).
    pub frees: u64,
    /// Bytes requested by those calls.
    pub bytes_allocated: u64,
    /// Bytes given back.
    pub bytes_freed: u64,
}

impl Counts {
    /// What happened between `earlier` and `self`.
    pub fn since(self, earlier: Counts) -> Counts {
        Counts {
            allocs: self.allocs - earlier.allocs,
            frees: self.frees - earlier.frees,
            bytes_allocated: self.bytes_allocated - earlier.bytes_allocated,
            bytes_freed: self.bytes_freed - earlier.bytes_freed,
        }
    }

    /// Bytes allocated and not yet freed (may be negative over a window in
    /// which more was freed than allocated).
    pub fn live_bytes(self) -> i64 {
        self.bytes_allocated as i64 - self.bytes_freed as i64
    }
}

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static FREES: AtomicU64 = AtomicU64::new(0);
static BYTES_ALLOCATED: AtomicU64 = AtomicU64::new(0);
static BYTES_FREED: AtomicU64 = AtomicU64::new(0);

thread_local! {
    // `const` initialisers and `Copy` contents: no lazy initialisation and no
    // destructor, so touching these from inside the allocator never allocates.
    static T_ALLOCS: Cell<u64> = const { Cell::new(0) };
    static T_FREES: Cell<u64> = const { Cell::new(0) };
    static T_BYTES_ALLOCATED: Cell<u64> = const { Cell::new(0) };
    static T_BYTES_FREED: Cell<u64> = const { Cell::new(0) };
}

fn bump(cell: &'static std::thread::LocalKey<Cell<u64>>, by: u64) {
    let _ = cell.try_with(|c| c.set(c.get() + by));
}

fn count_alloc(size: usize) {
    ALLOCS.fetch_add(1, Ordering::Relaxed);
    BYTES_ALLOCATED.fetch_add(size as u64, Ordering::Relaxed);
    bump(&T_ALLOCS, 1);
    bump(&T_BYTES_ALLOCATED, size as u64);
}

fn count_free(size: usize) {
    FREES.fetch_add(1, Ordering::Relaxed);
    BYTES_FREED.fetch_add(size as u64, Ordering::Relaxed);
    bump(&T_FREES, 1);
    bump(&T_BYTES_FREED, size as u64);
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged and only adds bookkeeping that never allocates, so `System`'s
// guarantees carry over.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_alloc(layout.size());
        // SAFETY: forwarded with the caller's guarantees (non-zero size).
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_alloc(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count_free(layout.size());
        // SAFETY: `ptr` came from `System` (every allocation goes there) with
        // this layout, per the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_free(layout.size());
        count_alloc(new_size);
        // SAFETY: as for `dealloc`, plus the caller's guarantees on `new_size`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Counts for the whole process so far.
pub fn global() -> Counts {
    Counts {
        allocs: ALLOCS.load(Ordering::SeqCst),
        frees: FREES.load(Ordering::SeqCst),
        bytes_allocated: BYTES_ALLOCATED.load(Ordering::SeqCst),
        bytes_freed: BYTES_FREED.load(Ordering::SeqCst),
    }
}

/// Counts for the calling thread so far.
pub fn this_thread() -> Counts {
    let get = |k: &'static std::thread::LocalKey<Cell<u64>>| k.try_with(Cell::get).unwrap_or(0);
    Counts {
        allocs: get(&T_ALLOCS),
        frees: get(&T_FREES),
        bytes_allocated: get(&T_BYTES_ALLOCATED),
        bytes_freed: get(&T_BYTES_FREED),
    }
}
