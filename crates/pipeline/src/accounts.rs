//! Each configured account, ready to use: its settings, its one Zoom client (one token cache and
//! one rate budget per account per process), its destination and its path templates.

use std::sync::Arc;

use regex::Regex;
use relay_core::binding::Binding;
use relay_core::failure::{Code, StageError};
use relay_storage::{Location, StorageError};
use zoom_api::model::MeetingRecordings;
use zoom_api::{ZoomClient, ZoomSettings};

use crate::paths::{PathTemplates, TemplateError};
use crate::settings::{AccountSettings, topic_regex};

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("account `{account}`: destination: {source}")]
    Storage {
        account: String,
        source: StorageError,
    },
    #[error("account `{account}`: path template: {source}")]
    Template {
        account: String,
        source: TemplateError,
    },
    #[error("account `{account}`: {field} {reason}")]
    TopicFilter {
        account: String,
        field: &'static str,
        reason: String,
    },
    #[error("account `{account}`: Zoom client: {source}")]
    Zoom {
        account: String,
        source: zoom_api::ZoomError,
    },
}

pub struct Account {
    pub settings: AccountSettings,
    pub zoom: Arc<ZoomClient>,
    /// Meetings' destination, and webinars' unless `webinar_destination` is set: use
    /// [`Account::destination_for`].
    pub destination: Location,
    pub webinar_destination: Option<Location>,
    pub templates: PathTemplates,
    pub topics: TopicFilter,
}

/// The account's topic filters, compiled once.
#[derive(Debug, Clone, Default)]
pub struct TopicFilter {
    include: Option<Regex>,
    exclude: Option<Regex>,
}

impl TopicFilter {
    pub fn new(settings: &AccountSettings) -> Result<Self, AccountError> {
        let compile = |field: &'static str, pattern: &Option<String>| {
            pattern
                .as_deref()
                .map(topic_regex)
                .transpose()
                .map_err(|reason| AccountError::TopicFilter {
                    account: settings.name.clone(),
                    field,
                    reason,
                })
        };
        Ok(Self {
            include: compile("include_topic", &settings.include_topic)?,
            exclude: compile("exclude_topic", &settings.exclude_topic)?,
        })
    }

    /// Why a topic is left out, if it is.
    pub fn skip_reason(&self, topic: &str) -> Option<&'static str> {
        if self.include.as_ref().is_some_and(|r| !r.is_match(topic)) {
            return Some("topic does not match include_topic");
        }
        if self.exclude.as_ref().is_some_and(|r| r.is_match(topic)) {
            return Some("topic matches exclude_topic");
        }
        None
    }
}

impl Account {
    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// Where a recording of `kind` (the manifest's `meeting` or `webinar`) goes.
    pub fn destination_for(&self, kind: &str) -> &Location {
        match (&self.webinar_destination, kind) {
            (Some(webinars), "webinar") => webinars,
            _ => &self.destination,
        }
    }

    /// Whether the account wants this file type (`file_types` empty: everything).
    pub fn wants_file_type(&self, file_type: &str) -> bool {
        self.settings.file_types.is_empty()
            || self
                .settings
                .file_types
                .iter()
                .any(|wanted| wanted.eq_ignore_ascii_case(file_type))
    }

    /// Host filters: include list (if any) must match, exclude list must not.
    pub fn wants_host(&self, host_email: Option<&str>) -> bool {
        let host = host_email.unwrap_or_default();
        let listed = |list: &[String]| list.iter().any(|h| h.eq_ignore_ascii_case(host));
        (self.settings.include_hosts.is_empty() || listed(&self.settings.include_hosts))
            && !listed(&self.settings.exclude_hosts)
    }

    /// Why this account does not archive `meeting`, if it does not.
    pub fn skip_reason(&self, meeting: &MeetingRecordings) -> Option<&'static str> {
        let settings = &self.settings;
        if !settings.enabled {
            return Some("the account is switched off (enabled = false)");
        }
        if meeting.is_webinar() && !settings.webinars {
            return Some("webinars are off for this account");
        }
        if !meeting.is_webinar() && !settings.meetings {
            return Some("meetings are off for this account");
        }
        if !self.wants_host(meeting.host_email.as_deref()) {
            return Some("host filtered out");
        }
        if meeting
            .duration
            .is_some_and(|minutes| minutes < settings.min_duration_minutes)
        {
            return Some("shorter than min_duration_minutes");
        }
        if let Some(reason) = self.topics.skip_reason(&meeting.topic) {
            return Some(reason);
        }
        None
    }
}

/// All configured accounts. Built once per process by the composition root.
#[derive(Clone)]
pub struct Accounts {
    accounts: Arc<Vec<Account>>,
}

impl Accounts {
    /// Accounts whose apps are all Server-to-Server (a user-managed app needs [`Self::build`]).
    pub fn new(accounts: &[AccountSettings], zoom: &ZoomSettings) -> Result<Self, AccountError> {
        Self::build(accounts, zoom, None)
    }

    /// Every account; a user-managed OAuth app keeps its rotating refresh token in `staging`,
    /// which every process of the deployment shares.
    pub fn build(
        accounts: &[AccountSettings],
        zoom: &ZoomSettings,
        staging: Option<&crate::Staging>,
    ) -> Result<Self, AccountError> {
        let accounts = accounts
            .iter()
            .map(|account| {
                let name = account.name.clone();
                Ok(Account {
                    zoom: ZoomClient::new(
                        zoom,
                        &account.name,
                        crate::oauth::credentials(account, staging),
                    )
                    .map_err(|source| AccountError::Zoom {
                        account: name.clone(),
                        source,
                    })?,
                    destination: Location::parse(
                        &account.destination,
                        &account.destination_options,
                    )
                    .map_err(|source| AccountError::Storage {
                        account: name.clone(),
                        source,
                    })?,
                    webinar_destination: account
                        .webinar_destination
                        .as_ref()
                        .map(|url| Location::parse(url, &account.destination_options))
                        .transpose()
                        .map_err(|source| AccountError::Storage {
                            account: name.clone(),
                            source,
                        })?,
                    templates: PathTemplates::new(account).map_err(|source| {
                        AccountError::Template {
                            account: name.clone(),
                            source,
                        }
                    })?,
                    topics: TopicFilter::new(account)?,
                    settings: account.clone(),
                })
            })
            .collect::<Result<Vec<_>, AccountError>>()?;
        Ok(Self {
            accounts: Arc::new(accounts),
        })
    }

    pub fn by_name(&self, name: &str) -> Option<&Account> {
        self.accounts
            .iter()
            .find(|account| account.settings.name == name)
    }

    /// The account a message is bound to. Refuses a binding to an account no longer configured,
    /// and one whose Zoom account id is not the configured account's (a renamed or reassigned
    /// name must not redirect another tenant's work).
    pub fn resolve(&self, binding: &Binding) -> Result<&Account, StageError> {
        let account = self.by_name(&binding.account).ok_or_else(|| {
            StageError::new(
                Code::UnknownAccount,
                format!("no configured account named `{}`", binding.account),
            )
        })?;
        if account.settings.account_id != binding.account_id {
            return Err(StageError::new(
                Code::AccountMismatch,
                format!(
                    "the message is bound to Zoom account `{}`, but `{}` is configured with another id",
                    binding.account_id, binding.account
                ),
            ));
        }
        Ok(account)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Account> {
        self.accounts.iter()
    }
}
