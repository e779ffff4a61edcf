//! Zoom's per-account API budget, by category, enforced before a request leaves the process so
//! that 429s stay the exception (all of an account's apps share Zoom's budget).

use std::num::NonZeroU32;
use std::time::Duration;

use crate::settings::RateLimitSettings;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// Zoom's API rate-limit categories. Getting a meeting's recordings and deleting are Light;
/// listing a user's recordings is Medium.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    Light,
    Medium,
    Heavy,
    ResourceIntensive,
}

/// Who a call is for. Background work (reconciliation's listings) may use only a share of each
/// category's budget, so the live pipeline always keeps the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    Live,
    Background,
}

pub struct RateLimits {
    light: DefaultDirectRateLimiter,
    medium: DefaultDirectRateLimiter,
    heavy: DefaultDirectRateLimiter,
    resource_intensive: DefaultDirectRateLimiter,
    /// Shared by Heavy and Resource-intensive.
    daily: DefaultDirectRateLimiter,
    /// Each category's background share, taken before the category's own budget.
    background: [DefaultDirectRateLimiter; 4],
}

fn nonzero(value: u32) -> NonZeroU32 {
    NonZeroU32::new(value.max(1)).unwrap_or(NonZeroU32::MIN)
}

fn per_period(count: u32, period: Duration) -> DefaultDirectRateLimiter {
    let quota = Quota::with_period(period / count.max(1))
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(nonzero(count));
    RateLimiter::direct(quota)
}

impl RateLimits {
    pub fn new(settings: &RateLimitSettings) -> Self {
        Self {
            light: RateLimiter::direct(Quota::per_second(nonzero(settings.light_per_second))),
            medium: RateLimiter::direct(Quota::per_second(nonzero(settings.medium_per_second))),
            heavy: RateLimiter::direct(Quota::per_second(nonzero(settings.heavy_per_second))),
            resource_intensive: per_period(
                settings.resource_intensive_per_minute,
                Duration::from_secs(60),
            ),
            daily: per_period(settings.heavy_per_day, Duration::from_secs(24 * 3600)),
            background: [
                (settings.light_per_second, Duration::from_secs(1)),
                (settings.medium_per_second, Duration::from_secs(1)),
                (settings.heavy_per_second, Duration::from_secs(1)),
                (
                    settings.resource_intensive_per_minute,
                    Duration::from_secs(60),
                ),
            ]
            .map(|(count, period)| {
                let share = (f64::from(count) * settings.background_share).floor() as u32;
                per_period(share.max(1), period)
            }),
        }
    }

    /// Waits until a call of `category` for `priority` fits the budget.
    pub async fn acquire(&self, category: Category, priority: Priority) {
        if priority == Priority::Background {
            let index = match category {
                Category::Light => 0,
                Category::Medium => 1,
                Category::Heavy => 2,
                Category::ResourceIntensive => 3,
            };
            self.background[index].until_ready().await;
        }
        self.acquire_category(category).await
    }

    async fn acquire_category(&self, category: Category) {
        match category {
            Category::Light => self.light.until_ready().await,
            Category::Medium => self.medium.until_ready().await,
            Category::Heavy => {
                self.daily.until_ready().await;
                self.heavy.until_ready().await
            }
            Category::ResourceIntensive => {
                self.daily.until_ready().await;
                self.resource_intensive.until_ready().await
            }
        }
    }
}
