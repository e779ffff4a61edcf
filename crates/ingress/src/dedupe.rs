//! Deliveries already stored, by signature, for as long as their signature is accepted (until
//! their own timestamp leaves the window): a captured request replayed within the window is
//! answered without being stored again.
//!
//! One signature names one (timestamp, body) pair, so Zoom's own retries — which are distinct
//! deliveries — are not mistaken for replays of the first. Per process: replicas behind a load
//! balancer each keep their own (a replay that lands on another replica is stored once more,
//! harmlessly: consumers are idempotent). Bounded: past [`MAX_ENTRIES`] the oldest go first.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// About 40 bytes an entry: a few MiB at most.
pub const MAX_ENTRIES: usize = 100_000;

pub struct Seen {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    expiry: HashMap<[u8; 32], Instant>,
    order: VecDeque<([u8; 32], Instant)>,
}

impl Seen {
    pub fn new() -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Whether this signature was stored within the window.
    pub fn contains(&self, signature: &[u8; 32]) -> bool {
        self.contains_at(signature, Instant::now())
    }

    fn contains_at(&self, signature: &[u8; 32], now: Instant) -> bool {
        self.lock()
            .expiry
            .get(signature)
            .is_some_and(|expires| now < *expires)
    }

    /// Remembers a signature whose event the broker confirmed, for as long as it stays
    /// acceptable (`valid_for`: until its timestamp leaves the window).
    pub fn insert(&self, signature: [u8; 32], valid_for: Duration) {
        self.insert_at(signature, Instant::now(), valid_for);
    }

    fn insert_at(&self, signature: [u8; 32], now: Instant, valid_for: Duration) {
        let expires = now + valid_for;
        let mut inner = self.lock();
        // Oldest first; an entry that expires earlier than one ahead of it waits its turn, but
        // `contains` never honours an expired one and the count stays bounded.
        while let Some((old, when)) = inner.order.front().copied() {
            if when > now && inner.order.len() < MAX_ENTRIES {
                break;
            }
            inner.order.pop_front();
            if inner.expiry.get(&old).is_some_and(|at| *at == when) {
                inner.expiry.remove(&old);
            }
        }
        inner.expiry.insert(signature, expires);
        inner.order.push_back((signature, expires));
    }
}

impl Default for Seen {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_within_the_window_only() {
        let seen = Seen::new();
        let start = Instant::now();
        seen.insert_at([1; 32], start, Duration::from_secs(300));
        assert!(seen.contains_at(&[1; 32], start + Duration::from_secs(299)));
        assert!(!seen.contains_at(&[2; 32], start));
        assert!(!seen.contains_at(&[1; 32], start + Duration::from_secs(300)));
    }

    #[test]
    fn stays_bounded() {
        let seen = Seen::new();
        for index in 0..(MAX_ENTRIES + 10) {
            let mut key = [0u8; 32];
            key[..8].copy_from_slice(&(index as u64).to_le_bytes());
            seen.insert(key, Duration::from_secs(60));
        }
        let inner = seen.lock();
        assert!(inner.expiry.len() <= MAX_ENTRIES);
        assert!(inner.order.len() <= MAX_ENTRIES);
    }
}
