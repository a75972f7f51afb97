//! The real router, served by `ironclaw_api::serve` on loopback, over real storage in a
//! temporary directory, spoken to by a minimal HTTP/1.1 client written here.

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use ironclaw_api::{ApiParts, ApiState, Limits};
use ironclaw_audit::AuditLog;
use ironclaw_contract::ids::{AgentGroupId, MessagingGroupId, SessionId};
use ironclaw_gateway::{Chain, ChangeStore, Gateway};
use ironclaw_identity::TokenStore;
use ironclaw_ingest::{InboundEvent, Ingest, RouteFailure, RouteInbound, RouteReport, Wake};
use ironclaw_registry::{AgentGroup, Registry, Role, RoleGrant, User};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------
// The server under test.

struct Api {
    addr: SocketAddr,
    state: ApiState,
    registry: Arc<Registry>,
    /// The owner's token (operator `owner`).
    owner: String,
    /// A global admin's token (operator `admin`).
    admin: String,
    /// With [`Api::start_with_ingest`]: the token of operator `guest`, who holds no
    /// role.
    guest: Option<String>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    rt: Option<tokio::runtime::Runtime>,
    _tmp: tempfile::TempDir,
}

const GROUP: &str = "g1";

fn operator(tokens: &TokenStore, registry: &Registry, name: &str, role: Role) -> String {
    let (record, secret) = tokens.create(name, None).unwrap();
    registry
        .put_user(User {
            id: record.principal.clone(),
            kind: "operator".into(),
            display_name: name.into(),
        })
        .unwrap();
    registry
        .grant_role(&RoleGrant {
            user_id: record.principal,
            role,
            scope: None,
        })
        .unwrap();
    secret.expose().to_owned()
}

impl Api {
    /// Starts a ready server with the default limits.
    fn start() -> Self {
        Self::start_with(Limits::default(), true)
    }

    /// Builds the state like the daemon's bootstrap does, and serves it.
    fn start_with(limits: Limits, ready: bool) -> Self {
        Self::build(limits, ready, None)
    }

    /// A ready server with the channels (the web chat) and `ingest`, like a daemon
    /// that runs sessions.
    fn start_with_ingest(ingest: Ingest) -> Self {
        Self::build(Limits::default(), true, Some(ingest))
    }

    fn build(limits: Limits, ready: bool, ingest: Option<Ingest>) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let registry = Arc::new(Registry::in_memory());
        let audit = Arc::new(AuditLog::open(&tmp.path().join("audit.jsonl")).unwrap());
        let tokens = Arc::new(TokenStore::open(&tmp.path().join("tokens")).unwrap());
        let owner = operator(&tokens, &registry, "owner", Role::Owner);
        let admin = operator(&tokens, &registry, "admin", Role::Admin);
        let guest = ingest.is_some().then(|| {
            let (record, secret) = tokens.create("guest", None).unwrap();
            registry
                .put_user(User {
                    id: record.principal,
                    kind: "operator".into(),
                    display_name: "guest".into(),
                })
                .unwrap();
            secret.expose().to_owned()
        });
        let channels = ingest.is_some().then(|| {
            Arc::new(ironclaw_channels::Channels::from_config(&Default::default()).unwrap())
        });
        registry
            .create_agent_group(AgentGroup::new(
                AgentGroupId::new(GROUP).unwrap(),
                "Group one",
                "mock",
                "",
            ))
            .unwrap();
        let gateway = Arc::new(Gateway::new(
            ChangeStore::in_memory().unwrap(),
            registry.clone(),
            audit.clone(),
            Chain::standard(tmp.path().join("mounts")),
        ));
        let max_header_bytes = limits.max_header_bytes;
        let state = ApiState::new(ApiParts {
            gateway,
            registry: registry.clone(),
            audit,
            tokens,
            sessions: None,
            channels,
            ingest,
            limits,
            version: "test".into(),
        });
        if ready {
            state.set_not_ready(None);
        }

        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let app = ironclaw_api::router(state.clone());
        rt.spawn(async move {
            let served = ironclaw_api::serve(
                "127.0.0.1:0".parse().unwrap(),
                app,
                None,
                max_header_bytes,
                async move {
                    let _ = stop_rx.await;
                },
                Duration::from_secs(1),
                move |a| {
                    let _ = addr_tx.send(a);
                },
            )
            .await;
            if let Err(e) = served {
                eprintln!("serve failed: {e}");
            }
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the server reports its address");
        Self {
            addr,
            state,
            registry,
            owner,
            admin,
            guest,
            shutdown: Some(stop_tx),
            rt: Some(rt),
            _tmp: tmp,
        }
    }

    fn get(&self, path: &str, token: Option<&str>) -> Resp {
        send(self.addr, "GET", path, token, None, &[])
    }

    fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Resp {
        send(self.addr, "POST", path, token, Some(&body.to_string()), &[])
    }

    /// Submits a persona change to [`GROUP`] as `token`; returns its id.
    fn submit_persona(&self, token: &str, persona: &str) -> String {
        let r = self.post(
            "/v1/changes",
            Some(token),
            &json!({"kind": "persona", "agent_group_id": GROUP, "payload": {"persona": persona}}),
        );
        assert_eq!(r.status, 202, "{}", r.text());
        r.json()["id"].as_str().unwrap().to_owned()
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

// ---------------------------------------------------------------------------------
// A minimal HTTP/1.1 client.

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: body is not JSON ({e}): {}",
                self.status,
                self.text()
            )
        })
    }

    /// Asserts the API's error shape with `status` and `code`; returns the message.
    fn assert_error(&self, status: u16, code: &str) -> String {
        assert_eq!(self.status, status, "{}", self.text());
        assert!(
            self.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "{:?}",
            self.headers
        );
        let v = self.json();
        let err = v["error"].as_object().unwrap_or_else(|| panic!("{v}"));
        assert_eq!(err.len(), 2, "{v}");
        assert_eq!(v.as_object().unwrap().len(), 1, "{v}");
        assert_eq!(err["code"], code, "{v}");
        err["message"]
            .as_str()
            .expect("message is a string")
            .to_owned()
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(60))).unwrap();
    s
}

fn request_head(
    method: &str,
    path: &str,
    token: Option<&str>,
    body_len: Option<usize>,
    extra: &[(&str, &str)],
) -> String {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if let Some(n) = body_len {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {n}\r\n"
        ));
    }
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    head
}

fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
    extra: &[(&str, &str)],
) -> Resp {
    let mut bytes = request_head(method, path, token, body.map(str::len), extra).into_bytes();
    if let Some(b) = body {
        bytes.extend_from_slice(b.as_bytes());
    }
    exchange(addr, bytes)
}

/// Writes `request` (from another thread, ignoring write errors: the server may answer
/// and close before reading all of it) and reads the response until the server closes.
fn exchange(addr: SocketAddr, request: Vec<u8>) -> Resp {
    let mut stream = connect(addr);
    let mut writer = stream.try_clone().unwrap();
    let w = std::thread::spawn(move || {
        let _ = writer.write_all(&request);
        let _ = writer.flush();
    });
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            // A reset after the response arrived (the server closed with unread request
            // bytes) still leaves a complete response to parse.
            Err(e) if !raw.is_empty() && e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("reading the response: {e}"),
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let _ = w.join();
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Resp {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete head in {:?}", String::from_utf8_lossy(raw)));
    let head = std::str::from_utf8(&raw[..end]).expect("ASCII head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let mut parts = status_line.splitn(3, ' ');
    assert_eq!(parts.next(), Some("HTTP/1.1"), "{status_line}");
    let status: u16 = parts.next().unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (k, v) = l
                .split_once(':')
                .unwrap_or_else(|| panic!("bad header {l:?}"));
            (k.trim().to_owned(), v.trim().to_owned())
        })
        .collect();
    let rest = &raw[end + 4..];
    let find = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let body = if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        dechunk(rest)
    } else if let Some(len) = find("content-length") {
        let len: usize = len.parse().unwrap();
        assert!(rest.len() >= len, "body truncated: {} of {len}", rest.len());
        rest[..len].to_vec()
    } else {
        rest.to_vec()
    };
    Resp {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let nl = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size_text = std::str::from_utf8(&data[..nl]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        data = &data[nl + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

// ---------------------------------------------------------------------------------
// Prometheus text validation.

fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Parses `{k="v",...}`; returns the pairs.
fn parse_labels(s: &str) -> Result<Vec<(String, String)>, String> {
    let inner = s
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .ok_or("labels are not in braces")?;
    let mut out = Vec::new();
    let mut rest = inner;
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"").ok_or("label without =\"")?;
        if !is_label_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let close = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape {other:?}")),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => return Err("unterminated label value".into()),
            }
        };
        out.push((name.to_owned(), value));
        rest = &after[close + 1..];
        if let Some(r) = rest.strip_prefix(',') {
            rest = r;
            if rest.is_empty() {
                return Err("trailing comma".into());
            }
        } else if !rest.is_empty() {
            return Err(format!("junk after a label: {rest:?}"));
        }
    }
    Ok(out)
}

/// A sample: metric name, labels, value.
type Sample = (String, Vec<(String, String)>, u64);

/// Checks every line: `# HELP name text`, `# TYPE name counter`, or a sample
/// `name{labels} <u64>` whose name has a TYPE. Returns the samples.
fn validate_prometheus(text: &str) -> Result<Vec<Sample>, String> {
    let mut typed = std::collections::BTreeSet::new();
    let mut samples = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let err = |why: &str| format!("line {}: {why}: {line:?}", n + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest
                .split_once(' ')
                .ok_or_else(|| err("HELP without text"))?;
            if !is_metric_name(name) || help.trim().is_empty() {
                return Err(err("bad HELP"));
            }
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .ok_or_else(|| err("TYPE without kind"))?;
            if !is_metric_name(name) || kind != "counter" {
                return Err(err("bad TYPE"));
            }
            if !typed.insert(name.to_owned()) {
                return Err(err("TYPE repeated"));
            }
        } else {
            let (series, value) = line.rsplit_once(' ').ok_or_else(|| err("no value"))?;
            let value: u64 = value.parse().map_err(|_| err("value is not a u64"))?;
            let (name, labels) = match series.find('{') {
                Some(i) => (
                    &series[..i],
                    parse_labels(&series[i..]).map_err(|e| err(&e))?,
                ),
                None => (series, Vec::new()),
            };
            if !is_metric_name(name) {
                return Err(err("bad metric name"));
            }
            if !typed.contains(name) {
                return Err(err("sample before its TYPE"));
            }
            samples.push((name.to_owned(), labels, value));
        }
    }
    Ok(samples)
}

#[test]
fn prometheus_validator_refuses_bad_lines() {
    let good = "# HELP a_total Things.\n# TYPE a_total counter\na_total 3\na_total{x=\"a\\\"b\",y=\"\"} 0\n";
    let samples = validate_prometheus(good).unwrap();
    assert_eq!(
        samples[1].1,
        vec![("x".into(), "a\"b".into()), ("y".into(), String::new())]
    );
    for bad in [
        "a_total 1\n",
        "# TYPE a_total gauge\na_total 1\n",
        "# TYPE a_total counter\na_total -1\n",
        "# TYPE a_total counter\na_total 1.5\n",
        "# TYPE a_total counter\na_total{x=1} 1\n",
        "# TYPE a_total counter\na_total{x=\"1\",} 1\n",
        "# TYPE a_total counter\na_total{x=\"1\"\n",
        "# TYPE a_total counter\n1a 1\n",
        "# comment\n",
        "\n",
    ] {
        assert!(validate_prometheus(bad).is_err(), "{bad:?}");
    }
}

// ---------------------------------------------------------------------------------
// Tests.

#[test]
fn health_and_readiness_are_open() {
    let api = Api::start_with(Limits::default(), false);
    let r = api.get("/healthz", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"status": "ok", "version": "test"}));

    let r = api.get("/readyz", None);
    assert_eq!(r.status, 503, "{}", r.text());
    let v = r.json();
    assert_eq!(v["status"], "not_ready");
    assert_eq!(v["reason"], "starting");

    api.state.add_notice("unsandboxed dev isolator");
    api.state.set_not_ready(None);
    let r = api.get("/readyz", None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"status": "ready", "notices": ["unsandboxed dev isolator"]})
    );

    // /v1/status reflects the same.
    let r = api.get("/v1/status", Some(&api.owner));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["ready"], true);
    assert_eq!(v["not_ready_reason"], Value::Null);
    assert_eq!(v["changes"]["pending"], 0);
    assert_eq!(v["version"], "test");
}

#[test]
fn protected_routes_need_a_valid_token() {
    let api = Api::start();
    for path in [
        "/v1/whoami",
        "/metrics",
        "/v1/changes/pending",
        "/v1/tokens",
    ] {
        for token in [None, Some("wrong"), Some("")] {
            let r = api.get(path, token);
            r.assert_error(401, "unauthorized");
            assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{path}");
        }
        // Another scheme with the right secret is still refused.
        let r = send(
            api.addr,
            "GET",
            path,
            None,
            None,
            &[("Authorization", &format!("Basic {}", api.owner))],
        );
        r.assert_error(401, "unauthorized");
    }
    // A write without a token is refused before its body is looked at.
    let r = api.post("/v1/changes", None, &json!({"bogus": true}));
    r.assert_error(401, "unauthorized");

    let r = api.get("/v1/whoami", Some(&api.owner));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["name"], "owner");
    assert_eq!(v["user_id"], "operator:owner");
    assert_eq!(
        v["roles"],
        json!([{"user_id": "operator:owner", "role": "owner", "scope": null}])
    );

    // Unknown paths get the JSON 404, with or without a token.
    let r = api.get("/v1/nope", Some(&api.owner));
    r.assert_error(404, "not_found");
    let r = api.get("/v1/nope", None);
    r.assert_error(404, "not_found");
}

#[test]
fn change_lifecycle_over_http() {
    let api = Api::start();
    let owner = api.owner.as_str();
    let admin = api.admin.as_str();

    let r = api.post(
        "/v1/changes",
        Some(owner),
        &json!({"kind": "persona", "agent_group_id": GROUP, "payload": {"persona": "Be brief."}, "reason": "tone"}),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let v = r.json();
    let id = v["id"].as_str().unwrap().to_owned();
    assert_eq!(v["status"], "pending");
    assert!(v["verdicts"].is_array());

    // Pending lists it; show returns it, requested by the authenticated principal.
    let r = api.get("/v1/changes/pending", Some(admin));
    assert_eq!(r.status, 200);
    let pending = r.json()["changes"].as_array().unwrap().clone();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0]["request"]["id"], id.as_str());
    let r = api.get(&format!("/v1/changes/{id}"), Some(admin));
    assert_eq!(r.status, 200, "{}", r.text());
    let rec = r.json();
    assert_eq!(rec["status"], "pending");
    assert_eq!(rec["request"]["requested_by"], "operator:owner");
    assert_eq!(rec["request"]["kind"], "persona");
    assert_eq!(rec["request"]["after"], json!({"persona": "Be brief."}));
    assert_eq!(rec["request"]["reason"], "tone");
    assert_eq!(rec["decision"], Value::Null);
    let hash = rec["request_hash"].as_str().unwrap().to_owned();
    assert_eq!(hash.len(), 64);

    // The requester cannot approve their own change.
    let decision = format!("/v1/changes/{id}/decision");
    let r = api.post(&decision, Some(owner), &json!({"outcome": "approve"}));
    let msg = r.assert_error(403, "forbidden");
    assert!(msg.contains("requested this change"), "{msg}");

    // A claimed decider other than the authenticated one is refused.
    let r = api.post(
        &decision,
        Some(admin),
        &json!({"outcome": "approve", "decided_by": "operator:owner"}),
    );
    let msg = r.assert_error(403, "forbidden");
    assert!(msg.contains("not the authenticated principal"), "{msg}");

    // Unknown and invalid ids; a bad outcome; unknown fields.
    api.post(
        "/v1/changes/chg_nope/decision",
        Some(admin),
        &json!({"outcome": "approve"}),
    )
    .assert_error(404, "not_found");
    api.get("/v1/changes/chg_nope", Some(admin))
        .assert_error(404, "not_found");
    api.get("/v1/changes/bad.id", Some(admin))
        .assert_error(400, "bad_request");
    api.post(&decision, Some(admin), &json!({"outcome": "maybe"}))
        .assert_error(400, "bad_request");
    api.post(
        &decision,
        Some(admin),
        &json!({"outcome": "approve", "force": true}),
    )
    .assert_error(400, "bad_request");
    // Retrying a change that did not fail to apply is a conflict.
    api.post(&format!("/v1/changes/{id}/retry"), Some(admin), &json!({}))
        .assert_error(409, "conflict");

    // The other operator approves: applied at once.
    let r = api.post(
        &decision,
        Some(admin),
        &json!({"outcome": "approve", "decided_by": "operator:admin"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let rec = r.json();
    assert_eq!(rec["status"], "applied", "{rec}");
    assert_eq!(rec["decision"]["outcome"], "approve");
    assert_eq!(rec["decision"]["decided_by"], "operator:admin");
    assert_eq!(rec["decision"]["request_hash"], hash.as_str());
    let group = api
        .registry
        .agent_group(&AgentGroupId::new(GROUP).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(group.persona, "Be brief.");
    let r = api.get(&format!("/v1/registry/agent-groups/{GROUP}"), Some(owner));
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["persona"], "Be brief.");

    // A second decision is a conflict; nothing is pending any more.
    api.post(&decision, Some(admin), &json!({"outcome": "reject"}))
        .assert_error(409, "conflict");
    let r = api.get("/v1/changes/pending", Some(admin));
    assert_eq!(r.json(), json!({"changes": []}));
    let r = api.get("/v1/changes/history?limit=10", Some(admin));
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["changes"][0]["status"], "applied");

    // A rejection.
    let id2 = api.submit_persona(owner, "Be verbose.");
    let r = api.post(
        &format!("/v1/changes/{id2}/decision"),
        Some(admin),
        &json!({"outcome": "reject"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["status"], "rejected");

    let r = api.get("/v1/status", Some(owner));
    let v = r.json();
    assert_eq!(v["changes"]["applied"], 1, "{v}");
    assert_eq!(v["changes"]["rejected"], 1, "{v}");
}

#[test]
fn submissions_are_validated() {
    let api = Api::start();
    let owner = Some(api.owner.as_str());
    let cases = [
        // Unknown kind.
        json!({"kind": "set_persona", "agent_group_id": GROUP, "payload": {"persona": "x"}}),
        // Kinds this control plane cannot apply.
        json!({"kind": "skill_install", "agent_group_id": GROUP, "payload": {}}),
        // Unknown agent group.
        json!({"kind": "persona", "agent_group_id": "nope", "payload": {"persona": "x"}}),
        // Invalid agent group id.
        json!({"kind": "persona", "agent_group_id": "../etc", "payload": {"persona": "x"}}),
        // Invalid payloads: wrong type, unknown field, missing field.
        json!({"kind": "persona", "agent_group_id": GROUP, "payload": {"persona": 1}}),
        json!({"kind": "persona", "agent_group_id": GROUP, "payload": {"persona": "x", "egress": ["evil.com"]}}),
        json!({"kind": "persona", "agent_group_id": GROUP}),
        // Unknown top-level field.
        json!({"kind": "persona", "agent_group_id": GROUP, "payload": {"persona": "x"}, "approved": true}),
        // Missing required field.
        json!({"agent_group_id": GROUP, "payload": {"persona": "x"}}),
        // Not an object.
        json!(["persona"]),
    ];
    for body in cases {
        let r = api.post("/v1/changes", owner, &body);
        let msg = r.assert_error(400, "bad_request");
        assert!(!msg.is_empty(), "{body}");
    }
    for raw in ["", "{", "null"] {
        let r = send(api.addr, "POST", "/v1/changes", owner, Some(raw), &[]);
        r.assert_error(400, "bad_request");
    }
    // A claimed requester other than the token's principal.
    let r = api.post(
        "/v1/changes",
        owner,
        &json!({"kind": "persona", "agent_group_id": GROUP, "payload": {"persona": "x"}, "requested_by": "operator:admin"}),
    );
    r.assert_error(403, "forbidden");
    // Nothing of the above was stored.
    let r = api.get("/v1/changes/pending", owner);
    assert_eq!(r.json(), json!({"changes": []}));
    // The matching claim is fine.
    let r = api.post(
        "/v1/changes",
        owner,
        &json!({"kind": "persona", "agent_group_id": GROUP, "payload": {"persona": "x"}, "requested_by": "operator:owner"}),
    );
    assert_eq!(r.status, 202, "{}", r.text());
}

#[test]
fn oversized_requests_are_refused() {
    let api = Api::start();
    let owner = api.owner.as_str();
    // A 2 MiB body (declared length over the 1 MiB default): 413 JSON.
    let big = format!(
        "{{\"kind\":\"persona\",\"agent_group_id\":\"g1\",\"payload\":{{\"persona\":\"{}\"}}}}",
        "a".repeat(2 * 1024 * 1024)
    );
    let r = send(
        api.addr,
        "POST",
        "/v1/changes",
        Some(owner),
        Some(&big),
        &[],
    );
    r.assert_error(413, "body_too_large");

    // The same body streamed without a declared length: refused while reading.
    let mut req = format!(
        "POST /v1/changes HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Authorization: Bearer {owner}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for chunk in big.as_bytes().chunks(64 * 1024) {
        req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        req.extend_from_slice(chunk);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    exchange(api.addr, req).assert_error(413, "body_too_large");

    // A 20 KiB header with the 16 KiB default limit: 431 JSON, on open routes too.
    let pad = "x".repeat(20 * 1024);
    for (path, token) in [("/v1/whoami", Some(owner)), ("/healthz", None)] {
        let r = send(api.addr, "GET", path, token, None, &[("X-Pad", &pad)]);
        let msg = r.assert_error(431, "headers_too_large");
        assert!(msg.contains("16384"), "{msg}");
    }
    // Far beyond the limit, the HTTP layer refuses on its own (still 431).
    let pad = "x".repeat(64 * 1024);
    let r = send(api.addr, "GET", "/healthz", None, None, &[("X-Pad", &pad)]);
    assert_eq!(r.status, 431);

    // The server is still fine.
    assert_eq!(api.get("/v1/whoami", Some(owner)).status, 200);
}

#[test]
fn rate_limit_answers_429_with_retry_after() {
    let api = Api::start_with(
        Limits {
            rate_limit_rps: 1.0,
            rate_limit_burst: 2,
            ..Limits::default()
        },
        true,
    );
    let owner = api.owner.as_str();
    assert_eq!(api.get("/v1/whoami", Some(owner)).status, 200);
    assert_eq!(api.get("/v1/whoami", Some(owner)).status, 200);
    let r = api.get("/v1/whoami", Some(owner));
    r.assert_error(429, "rate_limited");
    let wait: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("whole seconds");
    assert!(wait >= 1, "{wait}");
    // Unauthenticated requests are limited too (the limit runs first).
    api.get("/v1/whoami", None)
        .assert_error(429, "rate_limited");
    // Probes are never limited.
    for _ in 0..20 {
        assert_eq!(api.get("/healthz", None).status, 200);
        assert_eq!(api.get("/readyz", None).status, 200);
    }
    // After the wait, requests pass again and the refusals were counted.
    std::thread::sleep(Duration::from_millis(wait * 1000 + 1100));
    let r = api.get("/metrics", Some(owner));
    assert_eq!(r.status, 200, "{}", r.text());
    let samples = validate_prometheus(&r.text()).unwrap();
    let limited = samples
        .iter()
        .find(|(n, _, _)| n == "ironclaw_api_rate_limited_total")
        .unwrap();
    assert_eq!(limited.2, 2);
}

#[test]
fn metrics_are_prometheus_text() {
    let api = Api::start();
    let owner = api.owner.as_str();
    let admin = api.admin.as_str();
    // No token, no metrics.
    api.get("/metrics", None).assert_error(401, "unauthorized");

    let id = api.submit_persona(owner, "Short answers.");
    let r = api.post(
        &format!("/v1/changes/{id}/decision"),
        Some(admin),
        &json!({"outcome": "approve"}),
    );
    assert_eq!(r.json()["status"], "applied");
    // A refused decision (self-approval) is counted as refused.
    let id2 = api.submit_persona(owner, "Long answers.");
    api.post(
        &format!("/v1/changes/{id2}/decision"),
        Some(owner),
        &json!({"outcome": "approve"}),
    )
    .assert_error(403, "forbidden");

    let r = api.get("/metrics", Some(owner));
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        r.headers
    );
    let text = r.text();
    let samples = validate_prometheus(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    for needle in [
        "ironclaw_changes_submitted_total",
        "ironclaw_change_decisions_total{outcome=\"approve\"",
        "ironclaw_change_applies_total",
        "ironclaw_change_apply_failures_total",
        "ironclaw_api_requests_total{method=\"POST\",route=\"/v1/changes\",status=\"202\"}",
    ] {
        assert!(text.contains(needle), "missing {needle}:\n{text}");
    }
    let value = |name: &str, labels: &[(&str, &str)]| -> u64 {
        samples
            .iter()
            .find(|(n, l, _)| {
                n == name
                    && l.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .unwrap_or_else(|| panic!("no sample {name} {labels:?}:\n{text}"))
            .2
    };
    assert_eq!(value("ironclaw_changes_submitted_total", &[]), 2);
    assert_eq!(
        value(
            "ironclaw_change_decisions_total",
            &[("outcome", "approve"), ("by", "human")]
        ),
        1
    );
    assert_eq!(value("ironclaw_change_decisions_refused_total", &[]), 1);
    assert_eq!(value("ironclaw_change_applies_total", &[]), 1);
    assert_eq!(value("ironclaw_change_apply_failures_total", &[]), 0);
    assert_eq!(
        value(
            "ironclaw_api_requests_total",
            &[
                ("method", "POST"),
                ("route", "/v1/changes"),
                ("status", "202")
            ]
        ),
        2
    );
    // Requests are counted by route template, never by raw path.
    assert_eq!(
        value(
            "ironclaw_api_requests_total",
            &[
                ("method", "POST"),
                ("route", "/v1/changes/{id}/decision"),
                ("status", "403")
            ]
        ),
        1
    );
    assert!(!text.contains(&id), "raw ids leak into labels:\n{text}");
}

#[test]
fn tokens_are_managed_by_owners() {
    let api = Api::start();
    let owner = api.owner.as_str();
    let admin = api.admin.as_str();

    let r = api.post(
        "/v1/tokens",
        Some(owner),
        &json!({"name": "carol", "role": "admin"}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let v = r.json();
    assert_eq!(v["name"], "carol");
    assert_eq!(v["principal"], "operator:carol");
    assert_eq!(v["role"], "admin");
    let carol = v["token"].as_str().unwrap().to_owned();
    assert!(carol.len() >= 32, "{carol}");

    // The new token works, with the role granted.
    let r = api.get("/v1/whoami", Some(&carol));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["roles"],
        json!([{"user_id": "operator:carol", "role": "admin", "scope": null}])
    );

    // An admin cannot mint or revoke tokens.
    api.post(
        "/v1/tokens",
        Some(admin),
        &json!({"name": "dave", "role": "owner"}),
    )
    .assert_error(403, "forbidden");
    let r = send(
        api.addr,
        "DELETE",
        "/v1/tokens/carol",
        Some(admin),
        None,
        &[],
    );
    r.assert_error(403, "forbidden");
    // Bad bodies and a taken name.
    api.post(
        "/v1/tokens",
        Some(owner),
        &json!({"name": "Dave", "role": "admin"}),
    )
    .assert_error(400, "bad_request");
    api.post(
        "/v1/tokens",
        Some(owner),
        &json!({"name": "dave", "role": "root"}),
    )
    .assert_error(400, "bad_request");
    api.post(
        "/v1/tokens",
        Some(owner),
        &json!({"name": "dave", "role": "admin", "x": 1}),
    )
    .assert_error(400, "bad_request");
    api.post(
        "/v1/tokens",
        Some(owner),
        &json!({"name": "carol", "role": "admin"}),
    )
    .assert_error(409, "conflict");

    // The list shows every record and no secret.
    let r = api.get("/v1/tokens", Some(admin));
    assert_eq!(r.status, 200);
    let text = r.text();
    for secret in [owner, admin, carol.as_str()] {
        assert!(!text.contains(secret), "a secret is listed: {text}");
    }
    let v = r.json();
    let list = v["tokens"].as_array().unwrap();
    let names: Vec<&str> = list.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["owner", "admin", "carol"]);
    let carol_rec = &list[2];
    let keys: std::collections::BTreeSet<&str> = carol_rec
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "name",
            "principal",
            "hash_prefix",
            "created_at",
            "created_by",
            "revoked_at",
            "revoked_by"
        ]
        .into_iter()
        .collect()
    );
    assert_eq!(carol_rec["created_by"], "operator:owner");
    assert_eq!(carol_rec["revoked_at"], Value::Null);
    assert_eq!(carol_rec["hash_prefix"].as_str().unwrap().len(), 8);

    // Revoke: the token stops working at once; the record stays, marked revoked.
    let r = send(
        api.addr,
        "DELETE",
        "/v1/tokens/carol",
        Some(owner),
        None,
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"revoked": "carol"}));
    api.get("/v1/whoami", Some(&carol))
        .assert_error(401, "unauthorized");
    let r = api.get("/v1/tokens", Some(owner));
    assert_eq!(r.json()["tokens"][2]["revoked_by"], "operator:owner");
    // Again: nothing active to revoke. Oneself: refused. An invalid name: 400.
    send(
        api.addr,
        "DELETE",
        "/v1/tokens/carol",
        Some(owner),
        None,
        &[],
    )
    .assert_error(404, "not_found");
    send(
        api.addr,
        "DELETE",
        "/v1/tokens/owner",
        Some(owner),
        None,
        &[],
    )
    .assert_error(400, "bad_request");
    send(
        api.addr,
        "DELETE",
        "/v1/tokens/Not_Valid",
        Some(owner),
        None,
        &[],
    )
    .assert_error(400, "bad_request");

    // Both facts are in the audit log.
    let r = api.get("/v1/audit?limit=1000", Some(owner));
    let types: Vec<String> = r.json()["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|rec| rec["event"]["type"].as_str().unwrap().to_owned())
        .collect();
    assert!(types.iter().any(|t| t == "token_created"), "{types:?}");
    assert!(types.iter().any(|t| t == "token_revoked"), "{types:?}");
}

#[test]
fn audit_tail_and_verify() {
    let api = Api::start();
    let owner = api.owner.as_str();
    // Make some history: 3 submissions, 2 records each (submitted + verdict).
    for i in 0..3 {
        api.submit_persona(owner, &format!("Persona {i}."));
    }
    let r = api.get("/v1/audit?limit=5", Some(owner));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let records = v["records"].as_array().unwrap();
    assert_eq!(records.len(), 5, "{v}");
    let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    for pair in records.windows(2) {
        assert_eq!(pair[1]["prev_hash"], pair[0]["hash"]);
    }
    let last_seq = *seqs.last().unwrap();

    // The default and the clamp.
    let r = api.get("/v1/audit", Some(owner));
    assert_eq!(
        r.json()["records"].as_array().unwrap().len() as u64,
        last_seq
    );
    let r = api.get("/v1/audit?limit=0", Some(owner));
    assert_eq!(r.json()["records"].as_array().unwrap().len(), 1);

    let r = api.get("/v1/audit/verify", Some(owner));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["records"], last_seq);
    assert_eq!(v["last_seq"], last_seq);
    assert_eq!(v["last_hash"], records.last().unwrap()["hash"]);

    let r = api.get("/v1/status", Some(owner));
    assert_eq!(r.json()["audit_last_seq"], last_seq);
}

#[test]
fn registry_writes_need_roles() {
    let api = Api::start();
    let owner = api.owner.as_str();
    let admin = api.admin.as_str();
    let put = |token: &str, id: &str, body: &Value| {
        send(
            api.addr,
            "PUT",
            &format!("/v1/registry/users/{id}"),
            Some(token),
            Some(&body.to_string()),
            &[],
        )
    };

    // Users: owner or global admin.
    let r = put(
        admin,
        "slack:U1",
        &json!({"kind": "human", "display_name": "Uma"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"id": "slack:U1", "kind": "human", "display_name": "Uma"})
    );
    let r = api.get("/v1/registry/users/slack:U1", Some(owner));
    assert_eq!(r.json()["display_name"], "Uma");
    put(admin, "slack:U1", &json!({"kind": "robot"})).assert_error(400, "bad_request");
    put(admin, "slack:U1", &json!({"kind": "human", "admin": true}))
        .assert_error(400, "bad_request");
    api.get("/v1/registry/users/slack:nobody", Some(owner))
        .assert_error(404, "not_found");

    // Messaging groups: owner or global admin; find-or-create.
    let body = json!({"channel_type": "slack", "platform_id": "C1", "is_group": true});
    let r = api.post("/v1/registry/messaging-groups", Some(admin), &body);
    assert_eq!(r.status, 200, "{}", r.text());
    let mg = r.json();
    assert_eq!(mg["instance"], "slack");
    assert_eq!(mg["unknown_sender_policy"], "strict");
    let mg_id = mg["id"].as_str().unwrap().to_owned();
    let r = api.get(
        &format!("/v1/registry/messaging-groups/{mg_id}"),
        Some(owner),
    );
    assert_eq!(r.json(), mg);
    let r = api.get(
        &format!("/v1/registry/messaging-groups/{mg_id}/wirings"),
        Some(owner),
    );
    assert_eq!(r.json(), json!({"wirings": []}));

    // Roles: owners only.
    let grant = json!({"user_id": "slack:U1", "role": "admin", "agent_group_id": GROUP});
    api.post("/v1/registry/roles", Some(admin), &grant)
        .assert_error(403, "forbidden");
    let r = api.post("/v1/registry/roles", Some(owner), &grant);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"user_id": "slack:U1", "role": "admin", "scope": GROUP})
    );
    let r = api.get("/v1/registry/roles?user_id=slack:U1", Some(admin));
    assert_eq!(
        r.json(),
        json!({"roles": [{"user_id": "slack:U1", "role": "admin", "scope": GROUP}]})
    );
    let r = api.get(
        &format!("/v1/registry/access?user_id=slack:U1&agent_group_id={GROUP}"),
        Some(admin),
    );
    assert_eq!(r.json(), json!({"allowed": true, "reason": "scoped-admin"}));
    api.post(
        "/v1/registry/roles",
        Some(owner),
        &json!({"user_id": "slack:U1", "role": "admin", "agent_group_id": "nope"}),
    )
    .assert_error(404, "not_found");
    let r = api.post("/v1/registry/roles/revoke", Some(owner), &grant);
    assert_eq!(r.json(), json!({"revoked": true}));
    api.post(
        "/v1/registry/roles/revoke",
        Some(owner),
        &json!({"user_id": "operator:owner", "role": "owner"}),
    )
    .assert_error(400, "bad_request");

    // Reads of unknown things.
    api.get("/v1/registry/agent-groups/nope", Some(owner))
        .assert_error(404, "not_found");
    api.get("/v1/registry/sessions/nope", Some(owner))
        .assert_error(404, "not_found");
    let r = api.get("/v1/registry/sessions", Some(owner));
    assert_eq!(r.json(), json!({"sessions": []}));
    let r = api.get("/v1/registry/agent-groups", Some(owner));
    assert_eq!(r.json()["agent_groups"][0]["id"], GROUP);
}

/// Every entry of `ROUTES` is served by the router (neither the JSON fallback's 404 nor
/// a 405), so the table the OpenAPI test checks is the router's.
#[test]
fn every_listed_route_is_routed() {
    let api = Api::start();
    for (method, template) in ironclaw_api::ROUTES {
        let path = template.replace("{id}", "x1").replace("{name}", "nobody");
        let path = match path.as_str() {
            "/v1/registry/roles" if *method == "GET" => format!("{path}?user_id=u:1"),
            "/v1/registry/access" => format!("{path}?user_id=u:1&agent_group_id={GROUP}"),
            _ => path,
        };
        let body = matches!(*method, "POST" | "PUT").then_some("{}");
        let r = send(api.addr, method, &path, Some(&api.owner), body, &[]);
        assert_ne!(r.status, 405, "{method} {template}: {}", r.text());
        assert!(
            !(r.status == 404 && r.text().contains("no such route")),
            "{method} {template} is in ROUTES but not routed"
        );
    }
    // And the reverse spot check: a method not listed for a path is not served.
    let r = send(
        api.addr,
        "DELETE",
        "/v1/changes/pending",
        Some(&api.owner),
        None,
        &[],
    );
    assert_eq!(r.status, 405);
}

#[test]
fn framework_errors_use_the_json_error_shape() {
    let api = Api::start();
    let owner = api.owner.clone();
    api.get("/v1/registry/roles", Some(&owner))
        .assert_error(400, "bad_request");
    api.get("/v1/changes/history?limit=abc", Some(&owner))
        .assert_error(400, "bad_request");
    let r = send(
        api.addr,
        "DELETE",
        "/v1/changes/pending",
        Some(&owner),
        None,
        &[],
    );
    let msg = r.assert_error(405, "method_not_allowed");
    assert!(!msg.is_empty());
}

// ---------------------------------------------------------------------------------
// The web chat over the ingest service.

/// Engages session `ses_chat` for every event, or stops part-way after engaging it
/// when the text is "fail"; records what it routed.
#[derive(Default)]
struct ChatRouter(std::sync::Mutex<Vec<InboundEvent>>);

impl RouteInbound for ChatRouter {
    fn route(&self, event: &InboundEvent) -> Result<RouteReport, RouteFailure> {
        self.0.lock().unwrap().push(event.clone());
        let mut report = RouteReport::new(MessagingGroupId::new("mg_web").unwrap());
        report.outcomes.push({
            let mut o = ironclaw_ingest::RoutingOutcome::new(
                "w1",
                &AgentGroupId::new(GROUP).unwrap(),
                ironclaw_ingest::Reason::Engaged,
            );
            o.engaged = true;
            o.session_id = Some(SessionId::new("ses_chat").unwrap());
            o
        });
        report.wake.push(SessionId::new("ses_chat").unwrap());
        if event.text == "fail" {
            return Err(RouteFailure::Stopped {
                partial: Box::new(report),
                error: "routing stopped after 1 outcome(s): inbound sink: disk on fire".into(),
            });
        }
        Ok(report)
    }
}

#[derive(Default)]
struct Woken(std::sync::Mutex<Vec<SessionId>>);

impl Wake for Woken {
    fn wake(&self, session: &SessionId) {
        self.0.lock().unwrap().push(session.clone());
    }
}

/// `POST /v1/chat/send`: the web chat policy's refusals keep their statuses and
/// messages; a permitted message is opened, recorded, routed as the operator's
/// verified, addressed message, and its session woken.
#[test]
fn web_chat_send_applies_the_policy_and_hands_the_message_to_ingest() {
    let router = Arc::new(ChatRouter::default());
    let woken = Arc::new(Woken::default());
    let api = Api::start_with_ingest(Ingest::new(router.clone(), woken.clone()));
    let guest = api.guest.clone().unwrap();

    let r = api.post(
        "/v1/chat/send",
        Some(&api.owner),
        &json!({"agent_group_id": "nope", "text": "hi"}),
    );
    assert_eq!(r.assert_error(404, "not_found"), "no agent group nope");
    let r = api.post(
        "/v1/chat/send",
        Some(&guest),
        &json!({"agent_group_id": GROUP, "text": "hi"}),
    );
    let msg = r.assert_error(403, "forbidden");
    assert!(msg.ends_with("may not use agent group g1"), "{msg}");
    assert!(router.0.lock().unwrap().is_empty());

    let r = api.post(
        "/v1/chat/send",
        Some(&api.owner),
        &json!({"agent_group_id": GROUP, "text": "hello", "conversation_id": "c1"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["conversation_id"], "c1");
    assert_eq!(v["engaged"], true);
    assert_eq!(v["outcomes"][0]["session_id"], "ses_chat");
    assert_eq!(v["outcomes"][0]["reason"], "engaged (trigger=1)");
    let routed = router.0.lock().unwrap().clone();
    assert_eq!(routed.len(), 1);
    assert_eq!(routed[0].channel_type, "web");
    assert_eq!(routed[0].platform_id, "c1");
    assert_eq!(routed[0].sender_handle, "owner");
    assert_eq!(
        routed[0].platform_message_id.as_deref(),
        Some(v["message_id"].to_string().as_str())
    );
    assert!(api
        .registry
        .is_member(
            &ironclaw_contract::ids::UserId::new("web:owner").unwrap(),
            &AgentGroupId::new(GROUP).unwrap()
        )
        .unwrap());
    assert_eq!(
        *woken.0.lock().unwrap(),
        [SessionId::new("ses_chat").unwrap()]
    );
}

/// A web chat message whose routing stops part-way is a 500 with the router's message,
/// and the session it was already written to is woken all the same (the handler used
/// to drop the partial report's wakes: the row waited until something else woke it).
#[test]
fn a_web_chat_message_whose_routing_stops_still_wakes_what_was_written() {
    let router = Arc::new(ChatRouter::default());
    let woken = Arc::new(Woken::default());
    let api = Api::start_with_ingest(Ingest::new(router, woken.clone()));
    let r = api.post(
        "/v1/chat/send",
        Some(&api.owner),
        &json!({"agent_group_id": GROUP, "text": "fail"}),
    );
    assert_eq!(
        r.assert_error(500, "internal"),
        "routing: routing stopped after 1 outcome(s): inbound sink: disk on fire"
    );
    assert_eq!(
        *woken.0.lock().unwrap(),
        [SessionId::new("ses_chat").unwrap()]
    );
}
