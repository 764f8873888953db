//! HTTP route templates (`items/{id:int}`, `greet/{lang?}`, `files/{*path}`) and
//! the routing table built from them.
//!
//! Precedence follows ASP.NET routing, which Azure Functions uses: at each
//! segment a literal beats a constrained parameter, which beats a plain one,
//! which beats an optional one, which beats a catch-all.

use std::fmt;
use std::sync::Arc;

use super::FunctionEntry;

/// A parsed route template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTemplate {
    text: String,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param {
        name: String,
        constraint: Option<Constraint>,
        optional: bool,
    },
    CatchAll(String),
}

/// Parameter constraints of ASP.NET route templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Constraint {
    Int,
    Long,
    Bool,
    Alpha,
    Guid,
    Double,
}

impl Constraint {
    fn parse(s: &str) -> Option<Constraint> {
        Some(match s.to_ascii_lowercase().as_str() {
            "int" => Constraint::Int,
            "long" => Constraint::Long,
            "bool" => Constraint::Bool,
            "alpha" => Constraint::Alpha,
            "guid" => Constraint::Guid,
            "double" | "float" | "decimal" => Constraint::Double,
            _ => return None,
        })
    }

    fn accepts(self, v: &str) -> bool {
        match self {
            Constraint::Int => v.parse::<i32>().is_ok(),
            Constraint::Long => v.parse::<i64>().is_ok(),
            Constraint::Bool => v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("false"),
            Constraint::Alpha => !v.is_empty() && v.chars().all(|c| c.is_ascii_alphabetic()),
            Constraint::Guid => uuid::Uuid::parse_str(v).is_ok(),
            Constraint::Double => v.parse::<f64>().is_ok_and(f64::is_finite),
        }
    }
}

impl Segment {
    /// Lower ranks win at the same position.
    fn rank(&self) -> u8 {
        match self {
            Segment::Literal(_) => 0,
            Segment::Param {
                constraint: Some(_),
                optional: false,
                ..
            } => 1,
            Segment::Param {
                optional: false, ..
            } => 2,
            Segment::Param { .. } => 3,
            Segment::CatchAll(_) => 4,
        }
    }

    /// Two segments that match exactly the same inputs.
    fn same_shape(&self, other: &Segment) -> bool {
        match (self, other) {
            (Segment::Literal(a), Segment::Literal(b)) => a.eq_ignore_ascii_case(b),
            (
                Segment::Param {
                    constraint: c1,
                    optional: o1,
                    ..
                },
                Segment::Param {
                    constraint: c2,
                    optional: o2,
                    ..
                },
            ) => c1 == c2 && o1 == o2,
            (Segment::CatchAll(_), Segment::CatchAll(_)) => true,
            _ => false,
        }
    }
}

impl fmt::Display for RouteTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl RouteTemplate {
    /// Parse `text` (without the route prefix and without leading '/').
    pub fn parse(text: &str) -> Result<RouteTemplate, String> {
        let text = text.trim_matches('/');
        let mut segments = Vec::new();
        let mut names: Vec<String> = Vec::new();
        let parts: Vec<&str> = if text.is_empty() {
            vec![]
        } else {
            text.split('/').collect()
        };
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            if part.is_empty() {
                return Err(format!("route '{text}' has an empty segment ('//')"));
            }
            let segment = if let Some(inner) =
                part.strip_prefix('{').and_then(|p| p.strip_suffix('}'))
            {
                if let Some(name) = inner.strip_prefix('*') {
                    if !last {
                        return Err(format!(
                            "route '{text}': the catch-all {{*{name}}} must be the last segment"
                        ));
                    }
                    check_name(text, name)?;
                    Segment::CatchAll(name.to_string())
                } else {
                    let (inner, optional) = match inner.strip_suffix('?') {
                        Some(i) => (i, true),
                        None => (inner, false),
                    };
                    let (name, constraint) = match inner.split_once(':') {
                        Some((n, c)) => (
                            n,
                            Some(Constraint::parse(c).ok_or_else(|| {
                                format!(
                                    "route '{text}': unknown constraint ':{c}' (use int, long, bool, alpha, guid, \
                                     double, float or decimal)"
                                )
                            })?),
                        ),
                        None => (inner, None),
                    };
                    check_name(text, name)?;
                    Segment::Param {
                        name: name.to_string(),
                        constraint,
                        optional,
                    }
                }
            } else if part.contains(['{', '}']) {
                return Err(format!(
                    "route '{text}': segment '{part}' mixes text and a parameter; a parameter must be a whole \
                     segment"
                ));
            } else {
                Segment::Literal(part.to_string())
            };
            if let Segment::Param { name, .. } | Segment::CatchAll(name) = &segment {
                if names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                    return Err(format!("route '{text}': parameter '{name}' appears twice"));
                }
                names.push(name.clone());
            }
            segments.push(segment);
        }
        // Optional parameters may only be followed by optional parameters.
        if let Some(first_optional) = segments
            .iter()
            .position(|s| matches!(s, Segment::Param { optional: true, .. }))
            && segments[first_optional..]
                .iter()
                .any(|s| !matches!(s, Segment::Param { optional: true, .. }))
        {
            return Err(format!(
                "route '{text}': only the last segments may be optional"
            ));
        }
        Ok(RouteTemplate {
            text: text.to_string(),
            segments,
        })
    }

    /// The first literal segment, to check reserved routes.
    pub fn first_literal(&self) -> Option<&str> {
        match self.segments.first() {
            Some(Segment::Literal(l)) => Some(l),
            _ => None,
        }
    }

    fn precedence(&self) -> Vec<u8> {
        self.segments.iter().map(Segment::rank).collect()
    }

    /// Whether both templates match exactly the same paths.
    pub fn same_shape(&self, other: &RouteTemplate) -> bool {
        self.segments.len() == other.segments.len()
            && self
                .segments
                .iter()
                .zip(&other.segments)
                .all(|(a, b)| a.same_shape(b))
    }

    /// Match decoded path segments; the route parameters on success.
    fn matches(&self, parts: &[String]) -> Option<Vec<(String, String)>> {
        let mut params = Vec::new();
        let mut i = 0;
        for segment in &self.segments {
            match segment {
                Segment::Literal(l) => {
                    if !parts.get(i)?.eq_ignore_ascii_case(l) {
                        return None;
                    }
                }
                Segment::Param {
                    name,
                    constraint,
                    optional,
                } => match parts.get(i) {
                    Some(v) => {
                        if constraint.is_some_and(|c| !c.accepts(v)) {
                            return None;
                        }
                        params.push((name.clone(), v.clone()));
                    }
                    None if *optional => {}
                    None => return None,
                },
                Segment::CatchAll(name) => {
                    params.push((name.clone(), parts[i.min(parts.len())..].join("/")));
                    return Some(params);
                }
            }
            i += 1;
        }
        (i >= parts.len()).then_some(params)
    }
}

fn check_name(text: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "route '{text}': '{name}' is not a valid parameter name"
        ));
    }
    Ok(())
}

/// One routable function.
#[derive(Clone)]
pub struct Route {
    pub template: RouteTemplate,
    /// Upper-case methods; `None` for all.
    pub methods: Option<Vec<String>>,
    pub function: Arc<FunctionEntry>,
}

impl Route {
    fn allows(&self, method: &str) -> bool {
        self.methods
            .as_ref()
            .is_none_or(|ms| ms.iter().any(|m| m == method))
    }

    /// Whether this route and `other` would both answer some request.
    pub fn clashes_with(&self, other: &Route) -> bool {
        let overlap = match (&self.methods, &other.methods) {
            (Some(a), Some(b)) => a.iter().any(|m| b.contains(m)),
            _ => true,
        };
        overlap && self.template.same_shape(&other.template)
    }
}

/// What the router decided for a request.
pub enum RouteMatch {
    Found {
        function: Arc<FunctionEntry>,
        params: Vec<(String, String)>,
    },
    /// The path matches but not for this method; the allowed methods.
    MethodNotAllowed(Vec<String>),
    NotFound,
}

/// All HTTP routes, most specific first.
#[derive(Default, Clone)]
pub struct Router {
    routes: Vec<Route>,
}

impl Router {
    pub fn new(mut routes: Vec<Route>) -> Router {
        routes.sort_by_key(|r| r.template.precedence());
        Router { routes }
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Route `method` and `path` (the part after the route prefix, percent-decoded segments).
    pub fn find(&self, method: &str, segments: &[String]) -> RouteMatch {
        let mut allowed: Vec<String> = Vec::new();
        for route in &self.routes {
            let Some(params) = route.template.matches(segments) else {
                continue;
            };
            if route.allows(method) {
                return RouteMatch::Found {
                    function: route.function.clone(),
                    params,
                };
            }
            for m in route.methods.iter().flatten() {
                if !allowed.contains(m) {
                    allowed.push(m.clone());
                }
            }
        }
        if allowed.is_empty() {
            RouteMatch::NotFound
        } else {
            RouteMatch::MethodNotAllowed(allowed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(path: &str) -> Vec<String> {
        path.split('/')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    }

    fn m(t: &str, path: &str) -> Option<Vec<(String, String)>> {
        RouteTemplate::parse(t).unwrap().matches(&segs(path))
    }

    fn p(pairs: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
        Some(
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        )
    }

    #[test]
    fn templates_match_like_azure() {
        assert_eq!(m("hello", "hello"), p(&[]));
        assert_eq!(m("hello", "HELLO"), p(&[]));
        assert_eq!(m("hello", "hello/x"), None);
        assert_eq!(m("items/{id:int}", "items/42"), p(&[("id", "42")]));
        assert_eq!(m("items/{id:int}", "items/abc"), None);
        assert_eq!(m("greet/{lang?}", "greet"), p(&[]));
        assert_eq!(m("greet/{lang?}", "greet/fr"), p(&[("lang", "fr")]));
        assert_eq!(m("files/{*rest}", "files/a/b/c"), p(&[("rest", "a/b/c")]));
        assert_eq!(m("files/{*rest}", "files"), p(&[("rest", "")]));
        assert_eq!(
            m("x/{g:guid}", "x/6f9619ff-8b86-d011-b42d-00cf4fc964ff"),
            p(&[("g", "6f9619ff-8b86-d011-b42d-00cf4fc964ff")])
        );
        assert_eq!(m("x/{b:bool}", "x/True"), p(&[("b", "True")]));
        assert_eq!(m("", ""), p(&[]));
    }

    #[test]
    fn bad_templates_are_explained() {
        let e = |t| RouteTemplate::parse(t).unwrap_err();
        assert!(e("a/{id:number}").contains("unknown constraint ':number'"));
        assert!(e("a/{x}/{x}").contains("appears twice"));
        assert!(e("a/{x?}/b").contains("only the last segments may be optional"));
        assert!(e("a/{*r}/b").contains("must be the last segment"));
        assert!(e("a/file.{ext}").contains("mixes text and a parameter"));
        assert!(e("a//b").contains("empty segment"));
    }

    #[test]
    fn same_shape_ignores_parameter_names() {
        let a = RouteTemplate::parse("items/{id:int}").unwrap();
        assert!(a.same_shape(&RouteTemplate::parse("Items/{n:int}").unwrap()));
        assert!(!a.same_shape(&RouteTemplate::parse("items/{n}").unwrap()));
        assert!(!a.same_shape(&RouteTemplate::parse("items/new").unwrap()));
    }

    #[test]
    fn precedence_prefers_literals_then_constraints() {
        let mut ts = [
            "items/{*all}",
            "items/{id?}",
            "items/{id}",
            "items/{id:int}",
            "items/new",
        ]
        .map(|t| RouteTemplate::parse(t).unwrap())
        .to_vec();
        ts.sort_by_key(|t| t.precedence());
        let order: Vec<String> = ts.iter().map(|t| t.to_string()).collect();
        assert_eq!(
            order,
            [
                "items/new",
                "items/{id:int}",
                "items/{id}",
                "items/{id?}",
                "items/{*all}"
            ]
        );
    }
}
