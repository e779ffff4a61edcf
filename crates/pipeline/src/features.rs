//! What an account's configured features need of its Zoom app, and what `zoom-relay check` makes
//! of the scopes a token carries: the required ones that are missing (the account cannot work),
//! the optional ones that are missing (each disables the features named), and the granted ones
//! no configured feature uses (least privilege: remove them from the app).

use std::collections::BTreeMap;

use zoom_api::client::{Capability, unneeded_scopes};

use crate::settings::{AccountSettings, Metadata};

/// One feature's need: a capability, and whether the account can work without it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    pub capability: Capability,
    /// The feature as the configuration names it.
    pub feature: &'static str,
    /// Optional: a missing scope disables only this feature.
    pub optional: bool,
}

/// Everything `account`'s configuration asks of its app.
pub fn needs(account: &AccountSettings) -> Vec<Need> {
    let need = |capability, feature, optional| Need {
        capability,
        feature,
        optional,
    };
    let mut needs = vec![
        need(Capability::ReadRecordings, "archiving recordings", false),
        need(
            Capability::ReadUsers,
            "reconciliation (listing users)",
            false,
        ),
    ];
    if account.deletes() {
        needs.push(need(
            Capability::DeleteRecordings,
            "delete_after_upload",
            false,
        ));
    }
    for metadata in &account.metadata {
        match metadata {
            Metadata::Participants => {
                if account.meetings {
                    needs.push(need(
                        Capability::ReadMeetingParticipants,
                        "metadata \"participants\" (meetings)",
                        true,
                    ));
                }
                if account.webinars {
                    needs.push(need(
                        Capability::ReadWebinarParticipants,
                        "metadata \"participants\" (webinar attendees and panelists)",
                        true,
                    ));
                }
            }
            Metadata::Instances => needs.push(need(
                Capability::ReadPastInstances,
                "metadata \"instances\"",
                true,
            )),
            Metadata::Summary => needs.push(need(
                Capability::ReadMeetingSummary,
                "metadata \"summary\"",
                true,
            )),
            Metadata::CoOwners => {
                if account.meetings {
                    needs.push(need(
                        Capability::ReadMeeting,
                        "metadata \"co_owners\" (meetings)",
                        true,
                    ));
                }
                if account.webinars {
                    needs.push(need(
                        Capability::ReadWebinar,
                        "metadata \"co_owners\" (webinars)",
                        true,
                    ));
                }
            }
            Metadata::Qa => {
                if account.webinars {
                    needs.push(need(
                        Capability::ReadWebinarQa,
                        "metadata \"qa\" (webinars)",
                        true,
                    ));
                }
            }
        }
    }
    needs
}

/// What the granted scopes mean for the account's features.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ScopeReport {
    /// Missing, and needed by a feature the account cannot do without.
    pub missing: Vec<(Capability, Vec<&'static str>)>,
    /// Missing, and each disables only the optional features listed.
    pub disabled: Vec<(Capability, Vec<&'static str>)>,
    /// Granted, and used by no configured feature.
    pub unneeded: Vec<String>,
}

impl ScopeReport {
    pub fn new(needs: &[Need], granted: &[String]) -> Self {
        let mut missing: BTreeMap<usize, (Capability, Vec<&'static str>, bool)> = BTreeMap::new();
        for need in needs {
            if need.capability.satisfied_by(granted) {
                continue;
            }
            let position = Capability::ALL
                .iter()
                .position(|c| *c == need.capability)
                .unwrap_or(usize::MAX);
            let entry = missing
                .entry(position)
                .or_insert((need.capability, Vec::new(), true));
            entry.1.push(need.feature);
            entry.2 &= need.optional;
        }
        let wanted: Vec<Capability> = needs.iter().map(|need| need.capability).collect();
        let (disabled, missing): (Vec<_>, Vec<_>) = missing
            .into_values()
            .partition(|(_, _, optional)| *optional);
        let strip = |list: Vec<(Capability, Vec<&'static str>, bool)>| {
            list.into_iter()
                .map(|(capability, features, _)| (capability, features))
                .collect()
        };
        Self {
            missing: strip(missing),
            disabled: strip(disabled),
            unneeded: unneeded_scopes(granted, &wanted),
        }
    }

    /// Lines for `zoom-relay check`, one per finding.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for (capability, features) in &self.missing {
            lines.push(format!(
                "needs {} for {}",
                capability.describe(),
                features.join(", ")
            ));
        }
        for (capability, features) in &self.disabled {
            lines.push(format!(
                "missing {}: disables {}",
                capability.describe(),
                features.join(", ")
            ));
        }
        for scope in &self.unneeded {
            lines.push(format!(
                "not needed: {scope} (no configured feature uses it: remove it from the app)"
            ));
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scopes(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn account(toml_extra: &str) -> AccountSettings {
        toml::from_str(&format!(
            "name = \"acme\"\naccount_id = \"A\"\nclient_id = \"C\"\nclient_secret = \"S\"\nsecret_tokens = [\"t\"]\n{toml_extra}"
        ))
        .expect("account")
    }

    #[test]
    fn a_plain_account_needs_recordings_and_users_only() {
        let report = ScopeReport::new(
            &needs(&account("")),
            &scopes(&[
                "recording:read:admin",
                "user:read:admin",
                "recording:write:admin",
                "meeting:read:admin",
            ]),
        );
        assert!(report.missing.is_empty() && report.disabled.is_empty());
        assert_eq!(
            report.unneeded,
            vec!["recording:write:admin", "meeting:read:admin"]
        );
    }

    #[test]
    fn a_missing_optional_scope_names_the_features_it_disables() {
        let account = account(
            "metadata = [\"participants\", \"summary\", \"qa\", \"instances\"]\ndelete_after_upload = \"trash\"",
        );
        let report = ScopeReport::new(
            &needs(&account),
            &scopes(&[
                "recording:read:admin",
                "user:read:admin",
                "meeting:read:admin",
            ]),
        );
        assert_eq!(
            report.missing,
            vec![(Capability::DeleteRecordings, vec!["delete_after_upload"])]
        );
        let disabled: Vec<Capability> = report.disabled.iter().map(|(c, _)| *c).collect();
        assert_eq!(
            disabled,
            vec![
                Capability::ReadWebinarParticipants,
                Capability::ReadMeetingSummary,
                Capability::ReadWebinarQa
            ]
        );
        assert!(report.unneeded.is_empty());
        let lines = report.lines().join("\n");
        assert!(lines.contains("disables metadata \"summary\""), "{lines}");
    }
}
