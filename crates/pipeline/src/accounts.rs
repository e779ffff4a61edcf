//! Each configured account, ready to use: settings, Zoom client, destination, path templates.

use std::sync::Arc;

use relay_core::Settings;
use relay_core::settings::AccountSettings;
use zoom_api::ZoomClient;

use crate::paths::{PathTemplates, TemplateError};
use crate::storage::{Location, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("account `{account}`: {source}")]
    Storage {
        account: String,
        source: StorageError,
    },
    #[error("account `{account}`: path template: {source}")]
    Template {
        account: String,
        source: TemplateError,
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
    pub destination: Location,
    pub templates: PathTemplates,
}

impl Account {
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
}

/// All configured accounts, by name and by Zoom account id.
#[derive(Clone)]
pub struct Accounts {
    accounts: Arc<Vec<Account>>,
}

impl Accounts {
    pub fn new(settings: &Settings) -> Result<Self, AccountError> {
        let accounts = settings
            .accounts
            .iter()
            .map(|account| {
                let name = account.name.clone();
                Ok(Account {
                    zoom: ZoomClient::new(&settings.zoom, account).map_err(|source| {
                        AccountError::Zoom {
                            account: name.clone(),
                            source,
                        }
                    })?,
                    destination: Location::parse(
                        &account.destination,
                        &account.destination_options,
                    )
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

    /// The account a stage message names; a message for an account no longer configured is
    /// dead-lettered, not retried.
    pub fn require(&self, name: &str) -> Result<&Account, relay_core::consumer::StageError> {
        self.by_name(name).ok_or_else(|| {
            relay_core::consumer::StageError::reject(
                "unknown_account",
                format!("no configured account named `{name}`"),
            )
        })
    }

    pub fn by_zoom_id(&self, account_id: &str) -> Option<&Account> {
        self.accounts
            .iter()
            .find(|account| account.settings.account_id == account_id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Account> {
        self.accounts.iter()
    }
}
