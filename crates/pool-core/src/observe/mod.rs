//! What the pool tells its user about itself, apart from lending:
//! metrics counters ([`metrics`]) and their Prometheus rendering
//! ([`export`]), health
//! verdicts ([`health`]), leak detection ([`leak`]), and the event hooks a
//! user can install ([`events`]).

pub(crate) mod events;
pub(crate) mod export;
pub(crate) mod health;
pub(crate) mod leak;
pub(crate) mod metrics;
