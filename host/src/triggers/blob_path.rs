//! blobTrigger paths: `container/pattern` where the pattern holds binding
//! expressions such as `{name}` or `{name}.{ext}`, as in function.json.

/// A parsed blobTrigger `path`.
#[derive(Debug, Clone, PartialEq)]
pub struct BlobPath {
    pub container: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(String),
    Param(String),
}

impl BlobPath {
    /// Parse `container/pattern`; the error says what is wrong.
    pub fn parse(path: &str) -> Result<BlobPath, String> {
        let Some((container, pattern)) = path.split_once('/') else {
            return Err(format!(
                "path '{path}' must be 'container/pattern', e.g. 'samples/{{name}}'"
            ));
        };
        if container.contains('{') {
            return Err(format!(
                "path '{path}': the container name cannot hold a binding expression"
            ));
        }
        let mut parts = Vec::new();
        let mut rest = pattern;
        while !rest.is_empty() {
            match rest.find(['{', '}']) {
                Some(i) if rest.as_bytes()[i] == b'}' => {
                    return Err(format!("path '{path}': '}}' without '{{'"));
                }
                Some(i) => {
                    if i > 0 {
                        parts.push(Part::Literal(rest[..i].to_string()));
                    }
                    let end = rest[i..]
                        .find('}')
                        .ok_or_else(|| format!("path '{path}': '{{' without '}}'"))?;
                    let name = &rest[i + 1..i + end];
                    if name.is_empty()
                        || !name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    {
                        return Err(format!(
                            "path '{path}': '{{{name}}}' is not a binding expression: use a \
                             name such as {{name}}"
                        ));
                    }
                    if matches!(parts.last(), Some(Part::Param(_))) {
                        return Err(format!(
                            "path '{path}': two binding expressions need text between them"
                        ));
                    }
                    parts.push(Part::Param(name.to_string()));
                    rest = &rest[i + end + 1..];
                }
                None => {
                    parts.push(Part::Literal(rest.to_string()));
                    rest = "";
                }
            }
        }
        Ok(BlobPath {
            container: container.to_string(),
            parts,
        })
    }

    /// The literal start of the pattern: the listing prefix.
    pub fn prefix(&self) -> &str {
        match self.parts.first() {
            Some(Part::Literal(l)) => l,
            _ => "",
        }
    }

    /// The values of the binding expressions if `name` (a blob name in the
    /// container) matches; each expression takes as much as it can, so
    /// `{name}.{ext}` reads `a.b.png` as `a.b` and `png`.
    pub fn matches(&self, name: &str) -> Option<Vec<(String, String)>> {
        let mut values = Vec::new();
        match_parts(&self.parts, name, &mut values).then_some(values)
    }
}

fn match_parts(parts: &[Part], s: &str, values: &mut Vec<(String, String)>) -> bool {
    match parts.split_first() {
        None => s.is_empty(),
        Some((Part::Literal(l), rest)) => s
            .strip_prefix(l.as_str())
            .is_some_and(|tail| match_parts(rest, tail, values)),
        Some((Part::Param(p), rest)) => {
            // Longest first, never empty.
            let ends: Vec<usize> = s.char_indices().map(|(i, _)| i).skip(1).collect();
            for end in ends.into_iter().chain([s.len()]).rev() {
                if end == 0 {
                    continue;
                }
                let mark = values.len();
                values.push((p.clone(), s[..end].to_string()));
                if match_parts(rest, &s[end..], values) {
                    return true;
                }
                values.truncate(mark);
            }
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vals(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn binding_expressions_take_their_values() {
        let p = BlobPath::parse("weather-results/{name}").unwrap();
        assert_eq!(p.container, "weather-results");
        assert_eq!(p.prefix(), "");
        assert_eq!(p.matches("1234.txt"), Some(vals(&[("name", "1234.txt")])));
        assert_eq!(p.matches("a/b.txt"), Some(vals(&[("name", "a/b.txt")])));

        let p = BlobPath::parse("images/{name}.{ext}").unwrap();
        assert_eq!(
            p.matches("cat.png"),
            Some(vals(&[("name", "cat"), ("ext", "png")]))
        );
        assert_eq!(
            p.matches("a.b.png"),
            Some(vals(&[("name", "a.b"), ("ext", "png")]))
        );
        assert_eq!(p.matches("noext"), None);

        let p = BlobPath::parse("in/orders-{id}.json").unwrap();
        assert_eq!(p.prefix(), "orders-");
        assert_eq!(p.matches("orders-7.json"), Some(vals(&[("id", "7")])));
        assert_eq!(p.matches("orders-7.txt"), None);
        assert_eq!(p.matches("other.json"), None);

        let p = BlobPath::parse("fixed/exact.txt").unwrap();
        assert_eq!(p.matches("exact.txt"), Some(vec![]));
        assert_eq!(p.matches("exact.txt2"), None);
    }

    #[test]
    fn bad_paths_are_explained() {
        for (path, why) in [
            ("nocontainer", "must be 'container/pattern'"),
            ("c/{name", "'{' without '}'"),
            ("c/name}", "'}' without '{'"),
            ("c/{}", "not a binding expression"),
            ("c/{a}{b}", "need text between them"),
            ("{c}/x", "container name"),
        ] {
            let e = BlobPath::parse(path).unwrap_err();
            assert!(e.contains(why), "{path}: {e}");
        }
    }
}
