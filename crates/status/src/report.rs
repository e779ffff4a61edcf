//! Every process that holds Zoom clients tells the status stream how each account fares: the
//! last token obtained or the refusal, missing scopes, 429s and the daily cap's use
//! ([`AccountReport`]). The composition root runs [`run`] beside the stages.
//!
//! Each round asks each client for a token: free while one is cached, and it finds a refused
//! secret even when no recording arrives. A report is published when it says something new, and
//! at least every [`REPEAT`] (the status process then knows the process is alive).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use relay_core::broker::Broker;
use relay_core::status::{
    AccountReport, Authorization, RateLimitReport, StatusMessage, process_name,
};
use relay_pipeline::Accounts;
use tokio_util::sync::CancellationToken;
use tracing::debug;
use zoom_api::ZoomClient;
use zoom_api::client::Capability;

/// An unchanged report is repeated this often (the fold's [`crate::fold::REPORT_LIVE`] is three
/// times this).
pub const REPEAT: Duration = Duration::from_secs(15 * 60);
/// A report the broker did not take is tried again this soon.
const RETRY: Duration = Duration::from_secs(5);

/// An account as one process's Zoom client sees it.
pub struct ReportedAccount {
    pub name: String,
    pub account_id: String,
    pub client: Arc<ZoomClient>,
    /// What this process's features need of the app.
    pub needs: Vec<Capability>,
}

/// The pipeline's accounts: every account reads recordings; those that delete after upload
/// also need the scope to delete.
pub fn pipeline_accounts(accounts: &Accounts) -> Vec<ReportedAccount> {
    accounts
        .iter()
        .map(|account| {
            let mut needs = vec![Capability::ReadRecordings];
            if account.settings.deletes() {
                needs.push(Capability::DeleteRecordings);
            }
            ReportedAccount {
                name: account.name().to_owned(),
                account_id: account.settings.account_id.clone(),
                client: account.zoom.clone(),
                needs,
            }
        })
        .collect()
}

/// What a client says now.
pub async fn report(account: &ReportedAccount) -> AccountReport {
    // The outcome is recorded by the cache; a refusal is what the report is for.
    let _ = account.client.tokens().get().await;
    let outcome = account.client.tokens().outcome();
    let stats = account.client.stats().snapshot();
    let missing_scopes = if outcome.last_token_at.is_some() {
        account
            .needs
            .iter()
            .filter(|capability| !capability.satisfied_by(&outcome.scopes))
            .map(|capability| capability.describe().to_owned())
            .collect()
    } else {
        Vec::new()
    };
    AccountReport {
        at: Utc::now(),
        account: account.name.clone(),
        account_id: account.account_id.clone(),
        process: process_name(),
        since: stats.since,
        authorization: Authorization {
            last_token_at: outcome.last_token_at,
            last_error: outcome.last_error,
            last_error_at: outcome.last_error_at,
            missing_scopes,
        },
        rate_limits: RateLimitReport {
            rate_limited: stats.rate_limited,
            last_rate_limited_at: stats.last_rate_limited_at,
            daily_used: stats.daily_used,
            daily_cap: stats.daily_cap,
        },
    }
}

/// Whether two reports say the same (their time aside).
fn same(a: &AccountReport, b: &AccountReport) -> bool {
    a.authorization == b.authorization && a.rate_limits == b.rate_limits
}

/// Publishes each account's report every `interval` when it changed (every [`REPEAT`] when not),
/// until `shutdown`. A report the broker did not take is tried again after [`RETRY`].
pub async fn run(
    broker: Broker,
    accounts: Vec<ReportedAccount>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut last: Vec<Option<(AccountReport, DateTime<Utc>)>> = vec![None; accounts.len()];
    // The first round once the broker takes messages: a refused secret shows at once.
    tokio::select! {
        () = shutdown.cancelled() => return,
        _ = broker.wait_ready(interval) => {}
    }
    loop {
        let mut unsent = false;
        for (account, last) in accounts.iter().zip(last.iter_mut()) {
            let now = report(account).await;
            let due = match last {
                Some((previous, published)) => {
                    !same(previous, &now)
                        || Utc::now() - *published
                            >= chrono::TimeDelta::from_std(REPEAT).unwrap_or_default()
                }
                None => true,
            };
            if !due {
                continue;
            }
            match StatusMessage::Account(now.clone()).publish(&broker).await {
                Ok(()) => *last = Some((now, Utc::now())),
                Err(error) => {
                    unsent = true;
                    debug!(account = account.name, %error, "account report not published");
                }
            }
        }
        let pause = if unsent {
            RETRY.min(interval)
        } else {
            interval
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
    }
}
