//! One place that hides secrets in text the host shows: console lines, error
//! bodies, start-up errors. Known secrets (keys, account keys) are replaced
//! wherever they appear, and so is the value after `AccountKey=`,
//! `SharedAccessSignature=` or a SAS `sig=` in any text, registered or not.

use std::borrow::Cow;
use std::sync::RwLock;

/// What Azure Functions writes in place of a secret.
pub const HIDDEN: &str = "[Hidden Credential]";

/// Secrets seen so far; shorter ones would hide ordinary words.
static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());
const MIN_SECRET: usize = 8;

/// Connection-string and URL parts whose values are secrets (lower case).
const MARKERS: [&str; 3] = ["accountkey=", "sharedaccesssignature=", "sig="];

/// Hide `secret` from now on.
pub fn register(secret: &str) {
    if secret.len() < MIN_SECRET {
        return;
    }
    let mut secrets = SECRETS.write().expect("secrets lock");
    if !secrets.iter().any(|s| s == secret) {
        secrets.push(secret.to_string());
    }
}

/// Hide the account key and SAS of a connection string (any app setting may hold one).
pub fn register_connection_string(value: &str) {
    for part in value.split(';') {
        if let Some((k, v)) = part.split_once('=') {
            let k = k.trim();
            if k.eq_ignore_ascii_case("AccountKey")
                || k.eq_ignore_ascii_case("SharedAccessSignature")
            {
                register(v.trim());
            }
        }
    }
}

/// `text` with every secret replaced by [`HIDDEN`]; borrowed when there was none.
pub fn redact(text: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(text);
    {
        let secrets = SECRETS.read().expect("secrets lock");
        for s in secrets.iter() {
            if out.contains(s.as_str()) {
                out = Cow::Owned(out.replace(s.as_str(), HIDDEN));
            }
        }
    }
    if MARKERS.iter().any(|m| contains_ignore_case(&out, m)) {
        out = Cow::Owned(hide_marked(&out));
    }
    out
}

fn contains_ignore_case(text: &str, needle: &str) -> bool {
    text.as_bytes()
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// Replace the value after each marker, up to a separator.
fn hide_marked(text: &str) -> String {
    let bytes = text.as_bytes();
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let hit = MARKERS.iter().find(|m| {
            lower[i..].starts_with(*m)
                // `sig=` only as a parameter of its own, not the end of `xsig=`.
                && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric())
        });
        if let Some(m) = hit {
            out.push_str(&text[i..i + m.len()]);
            i += m.len();
            let end = text[i..]
                .find(|c: char| c == ';' || c == '&' || c == '"' || c == '\'' || c.is_whitespace())
                .map_or(text.len(), |n| i + n);
            if end > i {
                out.push_str(HIDDEN);
            }
            i = end;
        } else {
            let c = text[i..].chars().next().expect("in bounds");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_strings_are_masked_in_any_text() {
        let t = "cannot connect: DefaultEndpointsProtocol=https;AccountName=acc;AccountKey=c2VjcmV0a2V5==;EndpointSuffix=core.windows.net";
        let r = redact(t);
        assert!(!r.contains("c2VjcmV0a2V5"), "{r}");
        assert!(
            r.contains("AccountKey=[Hidden Credential];EndpointSuffix"),
            "{r}"
        );
        let sas = redact("GET https://a.blob.core.windows.net/c?sv=2020&sig=abc%2Bdef&se=1 failed");
        assert!(sas.contains("sig=[Hidden Credential]&se=1"), "{sas}");
        assert_eq!(redact("config=1 xsig=2"), "config=1 xsig=2");
        assert!(matches!(redact("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn registered_secrets_are_masked() {
        register("s3cr3t-value-for-test-only");
        register("short");
        let r = redact("key s3cr3t-value-for-test-only given; short stays");
        assert_eq!(r, "key [Hidden Credential] given; short stays");
        register_connection_string("AccountName=a;AccountKey=anotherKeyValue123");
        assert_eq!(
            redact("oops anotherKeyValue123"),
            "oops [Hidden Credential]"
        );
    }
}
