//! Who owns a recording at the destination: derived from the host's email by the account's
//! rule, as platforms that file recordings under their users expect (a Kaltura or VIDIZMO user
//! id is rarely the Zoom email as is).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How the host's email becomes the owner.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OwnerRule {
    /// The host's email as is (lower-cased).
    #[default]
    Email,
    /// The part before `@`.
    LocalPart,
    /// The email with its domain replaced per `domains` (`zoom.example.com` → `example.com`);
    /// a domain not listed gives `default`.
    Rewrite,
    /// Looked up in `table` (email → owner); an email not listed gives `default`.
    Table,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OwnerSettings {
    pub rule: OwnerRule,
    /// For `rewrite`: the host's domain → the owner's domain (case-insensitive).
    pub domains: BTreeMap<String, String>,
    /// For `table`: the host's email → the owner (case-insensitive).
    pub table: BTreeMap<String, String>,
    /// The owner when the rule finds none, or the recording names no host email.
    pub default: String,
}

impl Default for OwnerSettings {
    fn default() -> Self {
        Self {
            rule: OwnerRule::Email,
            domains: BTreeMap::new(),
            table: BTreeMap::new(),
            default: "unassigned".into(),
        }
    }
}

impl OwnerSettings {
    /// The owner of a recording hosted by `host_email`.
    pub fn owner_of(&self, host_email: Option<&str>) -> String {
        let email = host_email
            .map(|email| email.trim().to_lowercase())
            .filter(|email| !email.is_empty());
        let Some(email) = email else {
            return self.default.clone();
        };
        let found = match self.rule {
            OwnerRule::Email => Some(email),
            OwnerRule::LocalPart => email
                .split_once('@')
                .map(|(local, _)| local.to_owned())
                .filter(|local| !local.is_empty()),
            OwnerRule::Rewrite => email.split_once('@').and_then(|(local, domain)| {
                lookup(&self.domains, domain).map(|to| format!("{local}@{to}"))
            }),
            OwnerRule::Table => lookup(&self.table, &email).map(str::to_owned),
        };
        found.unwrap_or_else(|| self.default.clone())
    }
}

fn lookup<'a>(map: &'a BTreeMap<String, String>, key: &str) -> Option<&'a str> {
    map.iter()
        .find(|(from, _)| from.eq_ignore_ascii_case(key))
        .map(|(_, to)| to.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(rule: OwnerRule) -> OwnerSettings {
        OwnerSettings {
            rule,
            domains: [("zoom.example.com".into(), "example.com".into())].into(),
            table: [("Boss@Zoom.Example.com".into(), "k-user-0042".into())].into(),
            default: "archive-team".into(),
        }
    }

    #[test]
    fn each_rule_maps_the_host_or_falls_back_to_the_default() {
        let host = Some("Boss@zoom.example.com");
        let stranger = Some("guest@elsewhere.org");
        let cases = [
            (OwnerRule::Email, host, "boss@zoom.example.com"),
            (OwnerRule::Email, stranger, "guest@elsewhere.org"),
            (OwnerRule::LocalPart, host, "boss"),
            (OwnerRule::Rewrite, host, "boss@example.com"),
            (OwnerRule::Rewrite, stranger, "archive-team"),
            (OwnerRule::Table, host, "k-user-0042"),
            (OwnerRule::Table, stranger, "archive-team"),
            (OwnerRule::Email, None, "archive-team"),
            (OwnerRule::LocalPart, Some("@example.com"), "archive-team"),
            (OwnerRule::Email, Some("  "), "archive-team"),
        ];
        for (rule, host, owner) in cases {
            assert_eq!(rules(rule).owner_of(host), owner, "{rule:?} {host:?}");
        }
    }
}
