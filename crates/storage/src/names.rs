//! What may appear in one component of an object key, on every store zoom-relay writes to.
//!
//! Components are built so that `object_store` stores them as they are (no percent-encoding): the
//! key recorded in a manifest is then exactly the key written, and a local directory shows
//! readable names in any script. A component is at most [`MAX_COMPONENT_BYTES`] of UTF-8, well
//! under the 255 bytes every filesystem allows, with room for a disambiguating suffix.

use sha2::{Digest, Sha256};

/// Longest component [`component`] returns, in bytes.
pub const MAX_COMPONENT_BYTES: usize = 200;

/// Characters a filesystem or an object store treats specially: replaced by `_`. It covers
/// `object_store`'s own set (which it would percent-encode), Windows' forbidden characters, and
/// `%` and `#`, which URLs and shells misread.
fn is_hostile(ch: char) -> bool {
    matches!(
        ch,
        '/' | '\\'
            | ':'
            | '*'
            | '?'
            | '"'
            | '<'
            | '>'
            | '|'
            | '%'
            | '#'
            | '{'
            | '}'
            | '^'
            | '`'
            | '['
            | ']'
            | '~'
    )
}

/// Characters that change how a name displays without being seen: zero-width characters, bidi
/// controls (a name could display as `exe.mp4` and be `4pm.exe`), tag characters, soft hyphens.
fn is_invisible(ch: char) -> bool {
    ch.is_control()
        || matches!(ch,
            '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{E0000}'..='\u{E007F}')
}

/// Device names Windows refuses as a file name, with or without an extension.
fn is_reserved_on_windows(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or_default().trim_end();
    let upper = stem.to_ascii_uppercase();
    matches!(upper.as_str(), "CON" | "PRN" | "AUX" | "NUL")
        || ((upper.starts_with("COM") || upper.starts_with("LPT"))
            && upper.len() == 4
            && upper.as_bytes()[3].is_ascii_digit())
}

/// Cuts `text` to at most `max` bytes on a character boundary.
pub fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// One safe key component from any text: no separators, no hostile, control or invisible
/// characters, single spaces, no leading or trailing dots or spaces, never empty, `.`, `..` or a
/// Windows device name, at most `max_bytes` (and at most [`MAX_COMPONENT_BYTES`]).
pub fn component_within(value: &str, max_bytes: usize) -> String {
    let max_bytes = max_bytes.min(MAX_COMPONENT_BYTES);
    let mut out = String::with_capacity(value.len().min(max_bytes));
    let mut last_was_space = false;
    for ch in value.chars() {
        if is_invisible(ch) {
            continue;
        }
        let mapped = match ch {
            ch if is_hostile(ch) => '_',
            ch if ch.is_whitespace() => ' ',
            ch => ch,
        };
        if mapped == ' ' && last_was_space {
            continue;
        }
        last_was_space = mapped == ' ';
        if out.len() + mapped.len_utf8() > max_bytes {
            break;
        }
        out.push(mapped);
    }
    let trimmed = out.trim_matches(|c: char| c == '.' || c == ' ');
    if trimmed.is_empty() {
        "_".to_owned()
    } else if is_reserved_on_windows(trimmed) {
        truncate(&format!("_{trimmed}"), max_bytes).to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// [`component_within`] at the longest length allowed.
pub fn component(value: &str) -> String {
    component_within(value, MAX_COMPONENT_BYTES)
}

/// An injective component for an identity (a file id, a meeting uuid): a readable prefix plus a
/// digest of the exact value, so ids that differ only in characters the sanitising maps alike
/// (`a/b` and `a_b`), or only in case on a case-insensitive filesystem, never share a key.
pub fn identity(value: &str) -> String {
    let digest = hex::encode(Sha256::digest(value.as_bytes()));
    format!("{}-{}", component_within(value, 64), &digest[..10])
}

/// A short digest of `value`, for making a colliding name unique.
pub fn short_digest(value: &str, length: usize) -> String {
    let digest = hex::encode(Sha256::digest(value.as_bytes()));
    digest[..length.min(digest.len())].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_topics_become_plain_names() {
        assert_eq!(
            component("Quarterly review\u{200b}: plans/risks? <draft>"),
            "Quarterly review_ plans_risks_ _draft_"
        );
        assert_eq!(component("../../etc/passwd"), "_.._etc_passwd");
        assert_eq!(component(".."), "_");
        assert_eq!(component("   "), "_");
        assert_eq!(component("a\u{0}b\nc"), "abc");
        assert_eq!(
            component("Unity_4 зум 18:40 [142]"),
            "Unity_4 зум 18_40 _142_"
        );
    }

    #[test]
    fn bidi_controls_and_tags_are_removed() {
        // "invoice\u{202E}4pm.exe" displays as "invoiceexe.mp4".
        assert_eq!(component("invoice\u{202E}4pm.exe"), "invoice4pm.exe");
        assert_eq!(component("a\u{2066}b\u{2069}c\u{061C}d"), "abcd");
        assert_eq!(component("flag\u{E0067}\u{E0062}"), "flag");
    }

    #[test]
    fn windows_device_names_are_neutralised() {
        for name in ["CON", "nul", "Com1", "LPT9.txt", "aux.tar.gz"] {
            assert!(component(name).starts_with('_'), "{name}");
        }
        assert_eq!(component("CONSOLE"), "CONSOLE");
        assert_eq!(component("COM10"), "COM10");
    }

    #[test]
    fn long_names_are_cut_on_a_character_boundary() {
        let cyrillic = "зум".repeat(200);
        let cut = component(&cyrillic);
        assert!(cut.len() <= MAX_COMPONENT_BYTES);
        assert!(cut.len() > MAX_COMPONENT_BYTES - 4);
        assert!(cut.chars().all(|c| "зум".contains(c)));
    }

    #[test]
    fn identities_stay_distinct() {
        assert_ne!(identity("a/b"), identity("a_b"));
        assert_ne!(identity("abc=="), identity("ABC=="));
        assert!(identity(&"x".repeat(500)).len() < 80);
    }
}
