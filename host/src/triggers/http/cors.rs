//! CORS from local.settings.toml `[Host] CORS` and `CORSCredentials`.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};

use super::Body;

/// Allowed origins.
#[derive(Debug, Clone)]
pub struct Cors {
    any: bool,
    origins: Vec<String>,
    credentials: bool,
}

impl Cors {
    /// `"*"` or a comma-separated list of origins; `None` when empty.
    pub fn parse(setting: &str, credentials: bool) -> Option<Cors> {
        let origins: Vec<String> = setting
            .split(',')
            .map(|o| o.trim().trim_end_matches('/').to_string())
            .filter(|o| !o.is_empty())
            .collect();
        if origins.is_empty() {
            return None;
        }
        Some(Cors {
            any: origins.iter().any(|o| o == "*"),
            origins,
            credentials,
        })
    }

    fn allows(&self, origin: &HeaderValue) -> bool {
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        self.any || self.origins.iter().any(|o| o.eq_ignore_ascii_case(origin))
    }

    /// Answer a preflight request (`OPTIONS` with `Access-Control-Request-Method`).
    pub fn preflight(
        &self,
        method: &Method,
        origin: &HeaderValue,
        headers: &HeaderMap,
    ) -> Option<Response<Body>> {
        if method != Method::OPTIONS {
            return None;
        }
        let requested = headers.get(header::ACCESS_CONTROL_REQUEST_METHOD)?;
        let mut r = Response::new(Body::default());
        *r.status_mut() = StatusCode::NO_CONTENT;
        if self.allows(origin) {
            let h = r.headers_mut();
            self.decorate(origin, h);
            h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, requested.clone());
            if let Some(asked) = headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
                h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
            }
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("86400"),
            );
        }
        Some(r)
    }

    /// Add the CORS headers to a response for `origin`, if it is allowed.
    pub fn decorate(&self, origin: &HeaderValue, headers: &mut HeaderMap) {
        if !self.allows(origin) {
            return;
        }
        // With credentials the origin must be echoed, never "*".
        let value = if self.any && !self.credentials {
            HeaderValue::from_static("*")
        } else {
            origin.clone()
        };
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
        if self.credentials {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_wildcards() {
        assert!(Cors::parse("", false).is_none());
        let c = Cors::parse("https://a.example, https://b.example/", false).unwrap();
        assert!(c.allows(&HeaderValue::from_static("https://b.example")));
        assert!(!c.allows(&HeaderValue::from_static("https://c.example")));
        let mut h = HeaderMap::new();
        Cors::parse("*", false)
            .unwrap()
            .decorate(&HeaderValue::from_static("https://x"), &mut h);
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        let mut h = HeaderMap::new();
        Cors::parse("*", true)
            .unwrap()
            .decorate(&HeaderValue::from_static("https://x"), &mut h);
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://x");
    }
}
