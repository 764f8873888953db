//! `allowedOutboundHosts` of a function.toml: the origins a folder's functions
//! may call over outbound HTTP, in Spin's syntax (`scheme://host[:port]`).

use std::fmt;

/// The parsed `allowedOutboundHosts` list of one folder. Empty (the default)
/// allows no outbound request at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts {
    patterns: Vec<HostPattern>,
}

/// One entry, e.g. `https://api.example.com`, `http://127.0.0.1:*`,
/// `https://*.example.com`, `*://localhost:8080`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HostPattern {
    /// `None`: `*://`, http and https.
    scheme: Option<Scheme>,
    host: HostMatch,
    port: PortMatch,
    /// The entry as written, for messages.
    text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostMatch {
    /// `*`
    Any,
    /// `api.example.com`, `127.0.0.1`, `::1` (lower-case, no brackets).
    Exact(String),
    /// `*.example.com`, kept as `.example.com`: subdomains only, not the domain itself.
    Subdomains(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortMatch {
    /// No port written: the scheme's own (80, 443).
    Default,
    /// `:*`
    Any,
    Exact(u16),
}

impl AllowedHosts {
    /// Parse the entries; the first bad one gives an error that quotes it and
    /// says what to write instead.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<AllowedHosts, String> {
        let patterns = entries
            .iter()
            .map(|e| HostPattern::parse(e.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(AllowedHosts { patterns })
    }

    /// Whether nothing is allowed.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether a request to `scheme://host[:port]` is allowed. `host` may be an
    /// IPv6 literal in brackets; `port` is `None` when the URL has none.
    pub fn allows(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            _ => return false,
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let port = port.unwrap_or(scheme.default_port());
        self.patterns.iter().any(|p| {
            p.scheme.is_none_or(|s| s == scheme)
                && match &p.host {
                    HostMatch::Any => true,
                    HostMatch::Exact(h) => *h == host,
                    HostMatch::Subdomains(suffix) => {
                        host.len() > suffix.len() && host.ends_with(suffix.as_str())
                    }
                }
                && match p.port {
                    PortMatch::Default => port == scheme.default_port(),
                    PortMatch::Any => true,
                    PortMatch::Exact(n) => port == n,
                }
        })
    }
}

impl fmt::Display for AllowedHosts {
    /// `["https://api.example.com", "http://127.0.0.1:*"]`, or `[]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list: Vec<String> = self
            .patterns
            .iter()
            .map(|p| format!("\"{}\"", p.text))
            .collect();
        write!(f, "[{}]", list.join(", "))
    }
}

impl HostPattern {
    fn parse(text: &str) -> Result<HostPattern, String> {
        let bad = |why: &str| format!("allowedOutboundHosts entry \"{text}\" {why}");
        let Some((scheme, rest)) = text.split_once("://") else {
            return Err(bad(&format!(
                "has no scheme: write \"https://{text}\" (or \"*://{text}\" for http and https)"
            )));
        };
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Some(Scheme::Http),
            "https" => Some(Scheme::Https),
            "*" => None,
            other => {
                return Err(bad(&format!(
                    "has scheme '{other}': outbound HTTP takes http, https or *"
                )));
            }
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) {
            return Err(bad(
                "is not an origin: write scheme://host[:port] without a path, query or user",
            ));
        }
        // `[::1]:8080` keeps its colons inside the brackets.
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("has an IPv6 address without its closing ']'"))?;
            match after {
                "" => (host, None),
                _ => match after.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None => return Err(bad("has text after the IPv6 address")),
                },
            }
        } else {
            match rest.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            }
        };
        let host = host.to_ascii_lowercase();
        let valid_name = |name: &str| {
            !name.is_empty()
                && name.split('.').all(|label| {
                    !label.is_empty()
                        && label
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                })
        };
        let host = if host == "*" {
            HostMatch::Any
        } else if let Some(domain) = host.strip_prefix("*.")
            && valid_name(domain)
        {
            HostMatch::Subdomains(format!(".{domain}"))
        } else if host.contains('*') {
            return Err(bad(
                "has a '*' inside the host: use \"*\" for any host or \"*.example.com\" for \
                 subdomains",
            ));
        } else if valid_name(&host)
            || (host.contains(':') && host.parse::<std::net::Ipv6Addr>().is_ok())
        {
            HostMatch::Exact(host)
        } else {
            return Err(bad(&format!("has an invalid host '{host}'")));
        };
        let port = match port {
            None => PortMatch::Default,
            Some("*") => PortMatch::Any,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => PortMatch::Exact(n),
                _ => {
                    return Err(bad(&format!(
                        "has port '{p}': use a number from 1 to 65535, or * for any port"
                    )));
                }
            },
        };
        Ok(HostPattern {
            scheme,
            host,
            port,
            text: text.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(entries: &[&str]) -> AllowedHosts {
        AllowedHosts::parse(entries).unwrap()
    }

    #[test]
    fn exact_origins_use_the_schemes_default_port() {
        let h = hosts(&["https://api.example.com"]);
        assert!(h.allows("https", "api.example.com", None));
        assert!(h.allows("https", "API.example.com", Some(443)));
        assert!(!h.allows("https", "api.example.com", Some(8443)));
        assert!(!h.allows("http", "api.example.com", None));
        assert!(!h.allows("https", "example.com", None));
        assert!(!h.allows("https", "api.example.com.evil.net", None));
    }

    #[test]
    fn wildcards_for_port_host_scheme_and_subdomains() {
        let h = hosts(&["http://127.0.0.1:*"]);
        assert!(h.allows("http", "127.0.0.1", Some(41234)));
        assert!(h.allows("http", "127.0.0.1", None));
        assert!(!h.allows("https", "127.0.0.1", Some(41234)));
        assert!(!h.allows("http", "127.0.0.2", Some(41234)));

        let h = hosts(&["https://*.example.com"]);
        assert!(h.allows("https", "a.example.com", None));
        assert!(h.allows("https", "a.b.example.com", None));
        assert!(!h.allows("https", "example.com", None));
        assert!(!h.allows("https", "badexample.com", None));

        let h = hosts(&["*://localhost:8080", "https://*"]);
        assert!(h.allows("http", "localhost", Some(8080)));
        assert!(h.allows("https", "localhost", Some(8080)));
        assert!(!h.allows("http", "localhost", None));
        assert!(h.allows("https", "anything.org", None));

        let h = hosts(&["http://[::1]:*"]);
        assert!(h.allows("http", "[::1]", Some(9000)));
        assert!(hosts(&["https://example.com/"]).allows("https", "example.com", None));
    }

    #[test]
    fn empty_allows_nothing() {
        let h = AllowedHosts::default();
        assert!(h.is_empty());
        assert!(!h.allows("https", "example.com", None));
        assert!(!hosts(&["*://*:*"]).allows("ftp", "example.com", None));
    }

    /// Golden messages: what a user sees for each mistake.
    #[test]
    fn bad_entries_say_what_to_write() {
        let cases = [
            (
                "api.example.com",
                "allowedOutboundHosts entry \"api.example.com\" has no scheme: write \
                 \"https://api.example.com\" (or \"*://api.example.com\" for http and https)",
            ),
            (
                "ftp://files.example.com",
                "allowedOutboundHosts entry \"ftp://files.example.com\" has scheme 'ftp': \
                 outbound HTTP takes http, https or *",
            ),
            (
                "https://api.example.com/v1",
                "allowedOutboundHosts entry \"https://api.example.com/v1\" is not an origin: \
                 write scheme://host[:port] without a path, query or user",
            ),
            (
                "https://api.*.com",
                "allowedOutboundHosts entry \"https://api.*.com\" has a '*' inside the host: \
                 use \"*\" for any host or \"*.example.com\" for subdomains",
            ),
            (
                "http://127.0.0.1:http",
                "allowedOutboundHosts entry \"http://127.0.0.1:http\" has port 'http': use a \
                 number from 1 to 65535, or * for any port",
            ),
            (
                "https://exa mple.com",
                "allowedOutboundHosts entry \"https://exa mple.com\" has an invalid host \
                 'exa mple.com'",
            ),
            (
                "http://[::1:80",
                "allowedOutboundHosts entry \"http://[::1:80\" has an IPv6 address without its \
                 closing ']'",
            ),
        ];
        for (entry, want) in cases {
            assert_eq!(AllowedHosts::parse(&[entry]).unwrap_err(), want);
        }
    }

    #[test]
    fn display_lists_the_entries() {
        assert_eq!(
            hosts(&["https://a.example.com", "http://127.0.0.1:*"]).to_string(),
            "[\"https://a.example.com\", \"http://127.0.0.1:*\"]"
        );
        assert_eq!(AllowedHosts::default().to_string(), "[]");
    }
}
