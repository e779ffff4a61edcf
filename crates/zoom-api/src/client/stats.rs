//! What one account's client has met at Zoom: 429s and the daily Heavy/Resource-intensive use.
//! Plain atomics, counted where the calls are made; whoever holds the client reads a
//! [`StatsSnapshot`] (the relay publishes it as the account's report, docs/status.md).
//!
//! Counters are per process and start at zero with it: Zoom's own figures are per account across
//! every app and process, which no single process can see.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use chrono::{DateTime, Utc};

use super::ratelimit::Category;

/// Counters of one client. Cheap to update from any task.
#[derive(Debug)]
pub struct ZoomStats {
    started_at: DateTime<Utc>,
    /// 429s by category: light, medium, heavy, resource-intensive.
    rate_limited: [AtomicU64; 4],
    /// Milliseconds since the epoch of the last 429; 0 for never.
    last_rate_limited_ms: AtomicI64,
    /// The UTC day (days since the epoch) `daily_used` counts.
    day: AtomicI64,
    daily_used: AtomicU64,
    daily_cap: u64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Since when the counters count (the client's creation).
    pub since: DateTime<Utc>,
    /// HTTP 429s received, all categories.
    pub rate_limited: u64,
    /// HTTP 429s by category name (`light`, `medium`, `heavy`, `resource_intensive`).
    pub rate_limited_by_category: Vec<(&'static str, u64)>,
    pub last_rate_limited_at: Option<DateTime<Utc>>,
    /// Heavy and Resource-intensive calls sent today (UTC).
    pub daily_used: u64,
    /// The configured daily cap (`zoom.rate_limits.heavy_per_day`).
    pub daily_cap: u64,
}

const CATEGORIES: [&str; 4] = ["light", "medium", "heavy", "resource_intensive"];

fn index(category: Category) -> usize {
    match category {
        Category::Light => 0,
        Category::Medium => 1,
        Category::Heavy => 2,
        Category::ResourceIntensive => 3,
    }
}

fn day_of(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(86_400)
}

impl ZoomStats {
    pub fn new(daily_cap: u32) -> Self {
        let now = Utc::now();
        Self {
            started_at: now,
            rate_limited: Default::default(),
            last_rate_limited_ms: AtomicI64::new(0),
            day: AtomicI64::new(day_of(now)),
            daily_used: AtomicU64::new(0),
            daily_cap: u64::from(daily_cap),
        }
    }

    /// Zoom answered 429 to a call of `category`.
    pub fn rate_limited(&self, category: Category) {
        self.rate_limited[index(category)].fetch_add(1, Ordering::Relaxed);
        self.last_rate_limited_ms
            .store(Utc::now().timestamp_millis(), Ordering::Relaxed);
    }

    /// A call of `category` is about to be sent: Heavy and Resource-intensive ones count against
    /// the daily cap, which Zoom resets at 00:00 UTC.
    pub fn sent(&self, category: Category) {
        if !matches!(category, Category::Heavy | Category::ResourceIntensive) {
            return;
        }
        self.roll_over(Utc::now());
        self.daily_used.fetch_add(1, Ordering::Relaxed);
    }

    /// Starts a new day's count when the UTC day changed. Two tasks racing at midnight may lose
    /// one call of the new day's count: a figure for operators, not a budget.
    fn roll_over(&self, now: DateTime<Utc>) {
        let today = day_of(now);
        let counted = self.day.load(Ordering::Relaxed);
        if counted != today
            && self
                .day
                .compare_exchange(counted, today, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.daily_used.store(0, Ordering::Relaxed);
        }
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        self.snapshot_at(Utc::now())
    }

    fn snapshot_at(&self, now: DateTime<Utc>) -> StatsSnapshot {
        self.roll_over(now);
        let by_category: Vec<(&'static str, u64)> = CATEGORIES
            .iter()
            .zip(&self.rate_limited)
            .map(|(name, count)| (*name, count.load(Ordering::Relaxed)))
            .collect();
        let last = self.last_rate_limited_ms.load(Ordering::Relaxed);
        StatsSnapshot {
            since: self.started_at,
            rate_limited: by_category.iter().map(|(_, count)| count).sum(),
            rate_limited_by_category: by_category,
            last_rate_limited_at: (last > 0)
                .then(|| DateTime::from_timestamp_millis(last))
                .flatten(),
            daily_used: self.daily_used.load(Ordering::Relaxed),
            daily_cap: self.daily_cap,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_429s_by_category_and_only_heavy_calls_against_the_daily_cap() {
        let stats = ZoomStats::new(100);
        stats.rate_limited(Category::Light);
        stats.rate_limited(Category::Medium);
        stats.rate_limited(Category::Medium);
        for category in [Category::Light, Category::Medium, Category::Heavy] {
            stats.sent(category);
        }
        stats.sent(Category::ResourceIntensive);
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.rate_limited, 3);
        assert_eq!(snapshot.rate_limited_by_category[1], ("medium", 2));
        assert!(snapshot.last_rate_limited_at.is_some());
        assert_eq!((snapshot.daily_used, snapshot.daily_cap), (2, 100));
    }

    #[test]
    fn the_daily_count_starts_again_at_midnight_utc() {
        let stats = ZoomStats::new(10);
        stats.sent(Category::Heavy);
        let tomorrow = Utc::now() + chrono::TimeDelta::days(1);
        assert_eq!(stats.snapshot_at(tomorrow).daily_used, 0);
    }
}
