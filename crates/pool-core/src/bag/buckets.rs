//! Where seats live: buckets that double in size, allocated as the pool
//! grows and freed only with the bag, so a seat never moves.

/// Seats in the first bucket; bucket `b` holds `BASE << b` seats.
pub(super) const BASE: usize = 16;
/// Enough buckets for `MAX_SEATS` seats: 16 · (2¹³ − 1) ≥ 65,536.
pub(super) const BUCKETS: usize = 13;

/// The most seats a bag holds, and so the largest `max_size`
/// ([`MAX_SIZE_LIMIT`](crate::MAX_SIZE_LIMIT)).
pub(crate) const MAX_SEATS: usize = 65_536;
const _: () = assert!(BASE * ((1 << BUCKETS) - 1) >= MAX_SEATS);

/// Which bucket and which offset in it hold seat `index`.
#[inline]
pub(super) fn locate(index: usize) -> (usize, usize) {
    let j = index / BASE + 1;
    let bucket = (usize::BITS - 1 - j.leading_zeros()) as usize;
    (bucket, index - BASE * ((1 << bucket) - 1))
}
