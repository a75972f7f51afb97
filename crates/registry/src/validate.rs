//! The rules every record passes before it is written, and again when it is read back.
//!
//! Each rule returns the *normalized* value (persona without trailing newlines, lists
//! deduplicated, hostnames lower-cased), so "valid" has one meaning: a value is valid
//! when normalizing it succeeds and changes nothing. Reads use exactly that test to
//! tell a corrupted row from a good one.
//!
//! The alphabets are deliberately narrow. Tool, package and mount values end up in
//! prompts, command lines and mount tables; refusing a leading `-`, `..` components
//! and control characters here means no later component has to.

use std::collections::HashSet;

use ironclaw_contract::enums::EngageMode;

use crate::error::{invalid, RegistryError};
use crate::model::{
    AgentGroup, Destination, McpGrant, MountGrant, User, Wiring, PROVIDERS, USER_KINDS,
};

pub const NAME_MAX_CHARS: usize = 80;
pub const PERSONA_MAX_BYTES: usize = 4096;
pub const TOOL_NAME_MAX: usize = 64;
pub const MODEL_MAX_BYTES: usize = 128;
pub const PACKAGE_MAX_BYTES: usize = 214;
pub const PATH_MAX_BYTES: usize = 4096;
pub const HOSTNAME_MAX_BYTES: usize = 253;
pub const MCP_SERVER_MAX: usize = 64;
pub const MCP_TOOL_MAX: usize = 128;
pub const CHANNEL_TYPE_MAX: usize = 32;
pub const INSTANCE_MAX: usize = 64;
pub const PLATFORM_ID_MAX_BYTES: usize = 256;
pub const THREAD_ID_MAX_BYTES: usize = 256;
pub const DISPLAY_NAME_MAX_CHARS: usize = 200;
pub const PATTERN_MAX_BYTES: usize = 1024;
pub const WIRING_ID_MAX: usize = 64;
/// Upper bound on every capability list, so one record cannot grow without limit.
pub const LIST_MAX: usize = 256;

type R<T> = Result<T, RegistryError>;

impl AgentGroup {
    /// Checks every field and returns the normalized group.
    pub fn normalized(mut self) -> R<Self> {
        check_name(&self.name)?;
        if !PROVIDERS.contains(&self.provider.as_str()) {
            return Err(invalid(
                "provider",
                format!(
                    "{:?} is not one of: {}",
                    clip(&self.provider),
                    PROVIDERS.join(", ")
                ),
            ));
        }
        check_text("model", &self.model, 0, MODEL_MAX_BYTES)?;
        self.persona = normalize_persona(self.persona)?;
        self.enabled_tools = normalize_list("enabled_tools", self.enabled_tools, |s| {
            check_tool_name("enabled_tools", s)
        })?;
        self.packages = normalize_list("packages", self.packages, check_package)?;
        self.mounts = normalize_mounts(self.mounts)?;
        self.egress = normalize_list(
            "egress",
            self.egress
                .into_iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            check_hostname,
        )?;
        self.mcp_grants = normalize_mcp_grants(self.mcp_grants)?;
        Ok(self)
    }
}

impl Wiring {
    /// Checks the wiring's own fields (that its groups exist is checked at write).
    /// An empty id is accepted here: the writer mints one.
    pub fn normalized(self) -> R<Self> {
        if !self.id.is_empty() {
            check_token("wiring id", &self.id, WIRING_ID_MAX, TokenStyle::PathSafe)?;
        }
        match (&self.engage_mode, &self.engage_pattern) {
            (EngageMode::Pattern, None) => {
                return Err(invalid(
                    "engage_pattern",
                    "required when engage_mode is pattern",
                ))
            }
            (EngageMode::Pattern, Some(p)) => {
                check_text("engage_pattern", p, 1, PATTERN_MAX_BYTES)?;
            }
            // A pattern that is stored but never evaluated would mislead whoever reads
            // the wiring later.
            (_, Some(_)) => {
                return Err(invalid(
                    "engage_pattern",
                    format!(
                        "only meaningful with engage_mode pattern, not {}",
                        self.engage_mode
                    ),
                ))
            }
            (_, None) => {}
        }
        Ok(self)
    }
}

impl User {
    pub fn normalized(self) -> R<Self> {
        if !USER_KINDS.contains(&self.kind.as_str()) {
            return Err(invalid(
                "kind",
                format!(
                    "{:?} is not one of: {}",
                    clip(&self.kind),
                    USER_KINDS.join(", ")
                ),
            ));
        }
        if self.display_name.chars().count() > DISPLAY_NAME_MAX_CHARS {
            return Err(invalid(
                "display_name",
                format!("longer than {DISPLAY_NAME_MAX_CHARS} characters"),
            ));
        }
        check_no_control("display_name", &self.display_name)?;
        Ok(self)
    }
}

impl Destination {
    pub fn normalized(self) -> R<Self> {
        check_channel_type(&self.channel_type)?;
        check_platform_id(&self.platform_id)?;
        Ok(self)
    }
}

/// 1–80 characters, none of them control characters.
pub fn check_name(name: &str) -> R<()> {
    let n = name.chars().count();
    if n == 0 || n > NAME_MAX_CHARS {
        return Err(invalid(
            "name",
            format!("must be 1–{NAME_MAX_CHARS} characters, got {n}"),
        ));
    }
    check_no_control("name", name)
}

/// Trims trailing newlines, then enforces the byte limit and refuses control
/// characters other than tab and line breaks.
pub fn normalize_persona(persona: String) -> R<String> {
    let trimmed = persona.trim_end_matches(['\n', '\r']);
    if trimmed.len() > PERSONA_MAX_BYTES {
        return Err(invalid(
            "persona",
            format!("{} bytes; the limit is {PERSONA_MAX_BYTES}", trimmed.len()),
        ));
    }
    if let Some(c) = trimmed
        .chars()
        .find(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(invalid(
            "persona",
            format!("contains control character {c:?}"),
        ));
    }
    Ok(trimmed.to_owned())
}

/// `[a-z][a-z0-9_]{0,63}`.
pub fn check_tool_name(field: &'static str, s: &str) -> R<()> {
    let b = s.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= TOOL_NAME_MAX
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("{:?} is not a tool name ([a-z][a-z0-9_]{{0,63}})", clip(s)),
        ))
    }
}

/// A package spec as an installer takes it (`requests==2.31`, `@scope/pkg`): ASCII
/// letters, digits and `._+-@/=:~`, starting with a letter, digit or `@` so it can
/// never be read as a command-line flag.
pub fn check_package(s: &str) -> R<()> {
    let b = s.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= PACKAGE_MAX_BYTES
        && (b[0].is_ascii_alphanumeric() || b[0] == b'@')
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || b"._+-@/=:~".contains(&c));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "packages",
            format!("{:?} is not a package spec", clip(s)),
        ))
    }
}

/// An absolute path written plainly: starts with `/`, no empty, `.` or `..`
/// components, no trailing slash, not `/` itself, no control characters. A path is
/// therefore compared as text exactly as the kernel will resolve it (symlinks aside,
/// which the mount code has to handle on the host).
pub fn check_abs_path(field: &'static str, s: &str) -> R<()> {
    let bad = |why: &str| Err(invalid(field, format!("{:?}: {why}", clip(s))));
    if s.len() > PATH_MAX_BYTES {
        return bad("too long");
    }
    let Some(rest) = s.strip_prefix('/') else {
        return bad("not an absolute path");
    };
    if rest.is_empty() {
        return bad("the root directory cannot be mounted or mounted over");
    }
    if rest
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return bad("empty, '.' or '..' component");
    }
    if s.chars().any(char::is_control) {
        return bad("control character");
    }
    Ok(())
}

fn normalize_mounts(mounts: Vec<MountGrant>) -> R<Vec<MountGrant>> {
    check_list_len("mounts", mounts.len())?;
    let mut targets = HashSet::new();
    let mut out: Vec<MountGrant> = Vec::with_capacity(mounts.len());
    for m in mounts {
        check_abs_path("mounts.source", &m.source)?;
        check_abs_path("mounts.target", &m.target)?;
        if out.contains(&m) {
            continue;
        }
        // Two grants on one target: whichever the mount code applied last would win,
        // so refuse the ambiguity instead.
        if !targets.insert(m.target.clone()) {
            return Err(invalid(
                "mounts.target",
                format!("{:?} is mounted twice", clip(&m.target)),
            ));
        }
        out.push(m);
    }
    Ok(out)
}

/// A DNS hostname in lower case: dot-separated labels of `[a-z0-9-]`, 1–63 bytes,
/// not starting or ending with `-`; at most 253 bytes. No wildcards, ports or
/// schemes.
pub fn check_hostname(s: &str) -> R<()> {
    let ok = !s.is_empty()
        && s.len() <= HOSTNAME_MAX_BYTES
        && s.split('.').all(|l| {
            let b = l.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
                && b.iter()
                    .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "egress",
            format!("{:?} is not a hostname", clip(s)),
        ))
    }
}

fn normalize_mcp_grants(grants: Vec<McpGrant>) -> R<Vec<McpGrant>> {
    check_list_len("mcp_grants", grants.len())?;
    let mut out: Vec<McpGrant> = Vec::with_capacity(grants.len());
    for g in grants {
        check_token(
            "mcp_grants.server",
            &g.server,
            MCP_SERVER_MAX,
            TokenStyle::Lower,
        )?;
        if out.iter().any(|o| o.server == g.server) {
            return Err(invalid(
                "mcp_grants.server",
                format!("{:?} granted twice; merge the tool lists", g.server),
            ));
        }
        if g.tools.is_empty() {
            return Err(invalid(
                "mcp_grants.tools",
                format!(
                    "server {:?}: list the tools; an empty list does not mean all",
                    g.server
                ),
            ));
        }
        let tools = normalize_list("mcp_grants.tools", g.tools, |t| {
            check_token("mcp_grants.tools", t, MCP_TOOL_MAX, TokenStyle::Mcp)
        })?;
        out.push(McpGrant {
            server: g.server,
            tools,
        });
    }
    Ok(out)
}

pub fn check_channel_type(s: &str) -> R<()> {
    check_token("channel_type", s, CHANNEL_TYPE_MAX, TokenStyle::Lower)
}

pub fn check_instance(s: &str) -> R<()> {
    check_token("instance", s, INSTANCE_MAX, TokenStyle::Lower)
}

/// Platform ids are the platform's own (`C0123`, `+15551234`, an e-mail address…), so
/// only length and control characters are checked.
pub fn check_platform_id(s: &str) -> R<()> {
    check_text("platform_id", s, 1, PLATFORM_ID_MAX_BYTES)
}

pub fn check_thread_id(s: &str) -> R<()> {
    check_text("thread_id", s, 1, THREAD_ID_MAX_BYTES)
}

/// Deduplicates `items` keeping first occurrences, after checking each.
fn normalize_list(
    field: &'static str,
    items: Vec<String>,
    check: impl Fn(&str) -> R<()>,
) -> R<Vec<String>> {
    check_list_len(field, items.len())?;
    let mut seen = HashSet::with_capacity(items.len());
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        check(&item)?;
        if seen.insert(item.clone()) {
            out.push(item);
        }
    }
    Ok(out)
}

fn check_list_len(field: &'static str, len: usize) -> R<()> {
    if len > LIST_MAX {
        return Err(invalid(
            field,
            format!("{len} entries; the limit is {LIST_MAX}"),
        ));
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum TokenStyle {
    /// `[a-z0-9][a-z0-9_-]*`: channel types, instances, MCP server names.
    Lower,
    /// `[A-Za-z0-9][A-Za-z0-9_-]*`: ids that may become path components.
    PathSafe,
    /// `[A-Za-z0-9][A-Za-z0-9_.-]*`: MCP tool names as the MCP spec allows them.
    Mcp,
}

fn check_token(field: &'static str, s: &str, max: usize, style: TokenStyle) -> R<()> {
    let b = s.as_bytes();
    let body_ok = |c: u8| match style {
        TokenStyle::Lower => c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-',
        TokenStyle::PathSafe => c.is_ascii_alphanumeric() || c == b'_' || c == b'-',
        TokenStyle::Mcp => c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'.',
    };
    let ok = !b.is_empty()
        && b.len() <= max
        && body_ok(b[0])
        && b[0].is_ascii_alphanumeric()
        && b.iter().all(|&c| body_ok(c));
    if ok {
        Ok(())
    } else {
        let alphabet = match style {
            TokenStyle::Lower => "lower-case letters, digits, '_' and '-'",
            TokenStyle::PathSafe => "letters, digits, '_' and '-'",
            TokenStyle::Mcp => "letters, digits, '_', '-' and '.'",
        };
        Err(invalid(
            field,
            format!(
                "{:?}: must be 1–{max} bytes of {alphabet}, starting with a letter or digit",
                clip(s)
            ),
        ))
    }
}

/// `min..=max` bytes, no control characters.
fn check_text(field: &'static str, s: &str, min: usize, max: usize) -> R<()> {
    if s.len() < min || s.len() > max {
        return Err(invalid(
            field,
            format!("must be {min}–{max} bytes, got {}", s.len()),
        ));
    }
    check_no_control(field, s)
}

fn check_no_control(field: &'static str, s: &str) -> R<()> {
    match s.chars().find(|c| c.is_control()) {
        Some(c) => Err(invalid(field, format!("contains control character {c:?}"))),
        None => Ok(()),
    }
}

/// Error messages quote at most this much of a refused value.
fn clip(s: &str) -> String {
    s.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironclaw_contract::ids::AgentGroupId;

    fn group() -> AgentGroup {
        AgentGroup::new(AgentGroupId::new("g1").unwrap(), "G", "mock", "")
    }

    #[test]
    fn persona_trailing_newlines_are_trimmed_before_the_limit() {
        let mut g = group();
        g.persona = format!("{}\n\n\r\n", "x".repeat(PERSONA_MAX_BYTES));
        assert_eq!(g.normalized().unwrap().persona.len(), PERSONA_MAX_BYTES);
        let mut g = group();
        g.persona = "x".repeat(PERSONA_MAX_BYTES + 1);
        assert!(g.normalized().is_err());
        let mut g = group();
        g.persona = "a\u{7}b".into();
        assert!(g.normalized().is_err());
    }

    #[test]
    fn lists_are_deduplicated_in_order() {
        let mut g = group();
        g.enabled_tools = vec!["b".into(), "a".into(), "b".into()];
        g.egress = vec!["API.example.com".into(), "api.example.com".into()];
        let g = g.normalized().unwrap();
        assert_eq!(g.enabled_tools, ["b", "a"]);
        assert_eq!(g.egress, ["api.example.com"]);
    }

    #[test]
    fn narrow_alphabets() {
        for bad in ["", "Read", "1tool", "a-b", "a b", &"a".repeat(65)] {
            assert!(check_tool_name("t", bad).is_err(), "{bad:?}");
        }
        assert!(check_tool_name("t", &format!("a{}", "_".repeat(63))).is_ok());
        for bad in ["-rf", "a b", "a;b", ""] {
            assert!(check_package(bad).is_err(), "{bad:?}");
        }
        for good in ["requests==2.31", "@scope/pkg", "libc6:amd64", "g++"] {
            assert!(check_package(good).is_ok(), "{good:?}");
        }
        for bad in [
            "rel/path", "/", "/a/../b", "/a//b", "/a/", "/a/./b", "/a\nb",
        ] {
            assert!(check_abs_path("p", bad).is_err(), "{bad:?}");
        }
        for bad in [
            "",
            "-a.com",
            "a..com",
            "*.a.com",
            "a.com:443",
            "http://a.com",
        ] {
            assert!(check_hostname(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn mounts_and_mcp_grants() {
        let m = |t: &str| MountGrant {
            source: "/srv/data".into(),
            target: t.into(),
            read_only: true,
        };
        let mut g = group();
        g.mounts = vec![m("/data"), m("/data")];
        assert_eq!(g.normalized().unwrap().mounts.len(), 1);
        let mut g = group();
        let mut rw = m("/data");
        rw.read_only = false;
        g.mounts = vec![m("/data"), rw];
        assert!(g.normalized().is_err());

        let mut g = group();
        g.mcp_grants = vec![McpGrant {
            server: "github".into(),
            tools: vec![],
        }];
        assert!(g.normalized().is_err());
        let mut g = group();
        g.mcp_grants = vec![McpGrant {
            server: "github".into(),
            tools: vec!["get_issue".into(), "list-repos".into(), "get_issue".into()],
        }];
        assert_eq!(
            g.normalized().unwrap().mcp_grants[0].tools,
            ["get_issue", "list-repos"]
        );
    }
}
