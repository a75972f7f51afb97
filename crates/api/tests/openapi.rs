//! `docs/openapi.yaml` documents exactly the routes in `ironclaw_api::ROUTES`.
//!
//! No YAML crate is available, so this reads just the `paths:` section, strictly: path
//! keys indented by two spaces, operation keys by four. Anything at those two levels
//! that is not understood is an error rather than something silently skipped, so a
//! typo (`gett:`, a path indented by three) cannot hide a route.

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;

type Op = (String, String);

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];
/// Path-item keys that are not operations.
const PATH_ITEM_KEYS: &[&str] = &["summary", "description", "parameters", "servers"];

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// A mapping key on a line (`key:` or `key: value`), unquoted.
fn key_of(content: &str) -> Option<String> {
    let (key, rest) = if let Some(quoted) = content.strip_prefix('\'') {
        let end = quoted.find('\'')?;
        (&quoted[..end], &quoted[end + 1..])
    } else if let Some(quoted) = content.strip_prefix('"') {
        let end = quoted.find('"')?;
        (&quoted[..end], &quoted[end + 1..])
    } else {
        let colon = content.find(':')?;
        (&content[..colon], &content[colon..])
    };
    let rest = rest.strip_prefix(':')?;
    if !(rest.is_empty() || rest.starts_with(' ')) {
        return None;
    }
    Some(key.to_owned())
}

/// The (METHOD, path) operations of an OpenAPI document's `paths:` section.
fn parse_paths(doc: &str) -> Result<BTreeSet<Op>, String> {
    let mut ops = BTreeSet::new();
    let mut in_paths = false;
    let mut seen_paths_section = false;
    let mut current_path: Option<String> = None;
    let mut paths_seen = BTreeSet::new();
    for (n, raw) in doc.lines().enumerate() {
        let lineno = n + 1;
        if raw.contains('\t') && in_paths {
            return Err(format!("line {lineno}: tab in the paths section"));
        }
        let content = raw.trim();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let indent = indent_of(raw);
        if indent == 0 {
            if content == "paths:" {
                if seen_paths_section {
                    return Err(format!("line {lineno}: a second paths: section"));
                }
                in_paths = true;
                seen_paths_section = true;
            } else {
                in_paths = false;
            }
            current_path = None;
            continue;
        }
        if !in_paths {
            continue;
        }
        match indent {
            1 => return Err(format!("line {lineno}: unexpected indentation 1: {raw:?}")),
            2 => {
                let key = key_of(content)
                    .ok_or_else(|| format!("line {lineno}: not a path key: {raw:?}"))?;
                if !key.starts_with('/') {
                    return Err(format!(
                        "line {lineno}: key {key:?} in paths does not start with '/'"
                    ));
                }
                if !paths_seen.insert(key.clone()) {
                    return Err(format!("line {lineno}: path {key} listed twice"));
                }
                current_path = Some(key);
            }
            3 => return Err(format!("line {lineno}: unexpected indentation 3: {raw:?}")),
            4 => {
                let path = current_path
                    .as_ref()
                    .ok_or_else(|| format!("line {lineno}: operation outside a path"))?;
                let key = key_of(content)
                    .ok_or_else(|| format!("line {lineno}: not a key under {path}: {raw:?}"))?;
                if METHODS.contains(&key.as_str()) {
                    if !ops.insert((key.to_uppercase(), path.clone())) {
                        return Err(format!("line {lineno}: {key} {path} listed twice"));
                    }
                } else if !PATH_ITEM_KEYS.contains(&key.as_str()) && !key.starts_with("x-") {
                    return Err(format!(
                        "line {lineno}: {key:?} under {path} is neither an HTTP method nor a path-item key"
                    ));
                }
            }
            _ => {
                if current_path.is_none() {
                    return Err(format!("line {lineno}: content outside a path: {raw:?}"));
                }
            }
        }
    }
    if !seen_paths_section {
        return Err("no top-level paths: section".into());
    }
    if ops.is_empty() {
        return Err("the paths: section lists no operation".into());
    }
    Ok(ops)
}

/// What is missing from the document and what it lists in excess, as messages.
fn compare(routes: &[(&str, &str)], documented: &BTreeSet<Op>) -> Vec<String> {
    let expected: BTreeSet<Op> = routes
        .iter()
        .map(|(m, p)| (m.to_uppercase(), (*p).to_owned()))
        .collect();
    let mut problems = Vec::new();
    for (m, p) in expected.difference(documented) {
        problems.push(format!(
            "route {m} {p} is in ironclaw_api::ROUTES but not in docs/openapi.yaml"
        ));
    }
    for (m, p) in documented.difference(&expected) {
        problems.push(format!(
            "docs/openapi.yaml documents {m} {p}, which is not in ironclaw_api::ROUTES"
        ));
    }
    problems
}

#[test]
fn openapi_documents_exactly_the_routes() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.yaml");
    let doc = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    assert!(
        doc.starts_with("openapi: 3.0."),
        "{} is not an OpenAPI 3.0 document",
        path.display()
    );
    let documented = parse_paths(&doc).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let problems = compare(ironclaw_api::ROUTES, &documented);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(documented.len(), ironclaw_api::ROUTES.len());
}

#[test]
fn routes_are_unique() {
    let mut seen = BTreeSet::new();
    for (m, p) in ironclaw_api::ROUTES {
        assert!(seen.insert((m, p)), "{m} {p} is listed twice in ROUTES");
    }
}

const SAMPLE: &str = "\
openapi: 3.0.3
info:
  title: t
  version: '1'
paths:
  /healthz:
    get:
      responses:
        '200':
          description: ok
  '/v1/things/{id}':
    parameters:
      - name: id
    get:
      summary: 'get: one'
    delete:
      description: |
        post:
        /not/a/path:
components:
  schemas:
    /looks/like/a/path:
      get:
        type: object
";

#[test]
fn parser_reads_paths_and_methods_only() {
    let ops = parse_paths(SAMPLE).unwrap();
    let want: BTreeSet<Op> = [
        ("GET", "/healthz"),
        ("GET", "/v1/things/{id}"),
        ("DELETE", "/v1/things/{id}"),
    ]
    .iter()
    .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
    .collect();
    assert_eq!(ops, want);
}

#[test]
fn compare_names_missing_and_extra_routes() {
    let ops = parse_paths(SAMPLE).unwrap();
    let routes = [
        ("GET", "/healthz"),
        ("GET", "/v1/things/{id}"),
        ("POST", "/v1/things"),
    ];
    let problems = compare(&routes, &ops);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].contains("route POST /v1/things is in ironclaw_api::ROUTES but not"));
    assert!(problems[1].contains("documents DELETE /v1/things/{id}, which is not in"));
    let all = [
        ("GET", "/healthz"),
        ("GET", "/v1/things/{id}"),
        ("DELETE", "/v1/things/{id}"),
    ];
    assert!(compare(&all, &ops).is_empty());
}

#[test]
fn parser_refuses_what_it_does_not_understand() {
    let bad = [
        // A misspelt method.
        (
            "paths:\n  /a:\n    gett:\n      x: 1\n",
            "neither an HTTP method",
        ),
        // A path at the wrong indentation.
        ("paths:\n   /a:\n    get:\n", "indentation 3"),
        // A key in paths that is not a path.
        ("paths:\n  a:\n    get:\n", "does not start with '/'"),
        // A method before any path.
        ("paths:\n    get:\n", "operation outside a path"),
        // The same operation twice.
        ("paths:\n  /a:\n    get:\n    get:\n", "listed twice"),
        (
            "paths:\n  /a:\n    get:\n  /a:\n    post:\n",
            "listed twice",
        ),
        // No paths at all.
        ("openapi: 3.0.3\n", "no top-level paths"),
        ("paths:\n  /a:\n    summary: x\n", "lists no operation"),
        ("paths:\n  /a:\n\tget:\n", "tab"),
    ];
    for (doc, want) in bad {
        let err = parse_paths(doc).expect_err(doc);
        assert!(err.contains(want), "{doc:?}: {err}");
    }
}
