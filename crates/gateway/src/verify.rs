//! The verifier chain.
//!
//! Verifiers are deterministic checks (never a model) that run on every submitted
//! change. Aggregation: the first `reject` wins and stops the chain; otherwise any
//! `require_human` holds the change; a verifier error is a reject. The chain always
//! ends with [`AlwaysRequireHuman`] — the floor — so no change is ever applied without
//! a human decision: verifiers can only add strictness, never remove the human.

use std::path::{Component, Path, PathBuf};

use ironclaw_contract::enums::Verdict;
use ironclaw_contract::gateway::{ChangeRequest, VerifierVerdict};
use ironclaw_registry::Registry;

use crate::payload::{ChangePayload, PermissionsChange, ToolsChange};

/// What a verifier sees.
pub struct VerifyContext<'a> {
    pub request: &'a ChangeRequest,
    pub payload: &'a ChangePayload,
    pub registry: &'a Registry,
}

/// A deterministic check of a change request.
pub trait Verifier: Send + Sync {
    fn name(&self) -> &'static str;
    /// `Err` means the verifier could not decide; the chain treats it as a reject.
    fn verify(&self, cx: &VerifyContext<'_>) -> Result<(Verdict, String), String>;
}

/// The aggregate of a chain run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainOutcome {
    pub verdict: Verdict,
    pub reason: String,
    /// Every verifier that ran, in order.
    pub verdicts: Vec<VerifierVerdict>,
}

/// An ordered list of verifiers with the floor last.
pub struct Chain {
    verifiers: Vec<Box<dyn Verifier>>,
}

impl Chain {
    /// A chain of `verifiers` followed by the floor, which cannot be left out.
    pub fn new(mut verifiers: Vec<Box<dyn Verifier>>) -> Self {
        verifiers.push(Box::new(AlwaysRequireHuman));
        Self { verifiers }
    }

    /// The daemon's chain. `mount_prefix` is the only host directory tree mounts may
    /// come from.
    pub fn standard(mount_prefix: PathBuf) -> Self {
        Self::new(vec![
            Box::new(MountAllowlist {
                prefix: mount_prefix,
            }),
            Box::new(PackageNames),
            Box::new(ToolCatalog),
            Box::new(EgressHosts),
            Box::new(WiringTarget),
            Box::new(CreateAgent),
            Box::new(McpServers),
            Box::new(RegistryDryRun),
        ])
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.verifiers.iter().map(|v| v.name()).collect()
    }

    pub fn run(&self, cx: &VerifyContext<'_>) -> ChainOutcome {
        let mut verdicts = Vec::new();
        let mut held: Option<String> = None;
        for v in &self.verifiers {
            let (verdict, reason) = match v.verify(cx) {
                Ok(r) => r,
                Err(e) => (Verdict::Reject, format!("error: {e}")),
            };
            verdicts.push(VerifierVerdict {
                verifier: v.name().to_owned(),
                verdict,
                reason: reason.clone(),
            });
            match verdict {
                Verdict::Reject => {
                    return ChainOutcome {
                        verdict,
                        reason: format!("{}: {reason}", v.name()),
                        verdicts,
                    };
                }
                Verdict::RequireHuman if held.is_none() => {
                    held = Some(format!("{}: {reason}", v.name()))
                }
                _ => {}
            }
        }
        match held {
            Some(reason) => ChainOutcome {
                verdict: Verdict::RequireHuman,
                reason,
                verdicts,
            },
            None => ChainOutcome {
                verdict: Verdict::Pass,
                reason: "all verifiers passed".to_owned(),
                verdicts,
            },
        }
    }
}

fn pass(why: &str) -> Result<(Verdict, String), String> {
    Ok((Verdict::Pass, why.to_owned()))
}

fn reject(why: String) -> Result<(Verdict, String), String> {
    Ok((Verdict::Reject, why))
}

/// The v1 floor: every change waits for a human.
pub struct AlwaysRequireHuman;

impl Verifier for AlwaysRequireHuman {
    fn name(&self) -> &'static str {
        "always-require-human"
    }
    fn verify(&self, _: &VerifyContext<'_>) -> Result<(Verdict, String), String> {
        Ok((
            Verdict::RequireHuman,
            "every change needs a human decision".to_owned(),
        ))
    }
}

/// Mounts come only from under one host prefix and land only under `/mnt` in the
/// sandbox (never over the contract's paths, `/proc`, `/etc`, …).
pub struct MountAllowlist {
    pub prefix: PathBuf,
}

/// Lexically normal absolute path: no `..`, no `.`; symlinks are resolved at launch.
fn clean_absolute(p: &str) -> Option<PathBuf> {
    let path = Path::new(p);
    if !path.is_absolute() {
        return None;
    }
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::RootDir => {}
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    // `components()` silently drops what is not a component (`//`, a trailing `/`,
    // an inner `.`); the path must already be written plainly, so that what was
    // checked is exactly what is stored and mounted.
    (out.as_os_str() == path.as_os_str()).then_some(out)
}

impl Verifier for MountAllowlist {
    fn name(&self) -> &'static str {
        "mount-allowlist"
    }
    fn verify(&self, cx: &VerifyContext<'_>) -> Result<(Verdict, String), String> {
        let ChangePayload::Mounts(m) = cx.payload else {
            return pass("not a mount change");
        };
        for req in &m.mounts {
            let Some(source) = clean_absolute(&req.source) else {
                return reject(format!(
                    "source {:?} must be an absolute path without '.' or '..'",
                    req.source
                ));
            };
            if source == self.prefix || !source.starts_with(&self.prefix) {
                return reject(format!(
                    "source {:?} is outside the allowlist {}",
                    req.source,
                    self.prefix.display()
                ));
            }
            let Some(target) = clean_absolute(&req.target) else {
                return reject(format!(
                    "target {:?} must be an absolute path without '.' or '..'",
                    req.target
                ));
            };
            if !target.starts_with("/mnt") || target == Path::new("/mnt") {
                return reject(format!("target {:?} must be below /mnt", req.target));
            }
        }
        pass("mounts inside the allowlist")
    }
}

/// Package names that cannot smuggle shell syntax into an install command.
pub struct PackageNames;

pub(crate) fn safe_package_name(n: &str) -> bool {
    let b = n.as_bytes();
    !b.is_empty()
        && b.len() <= 214
        && (b[0].is_ascii_alphanumeric() || b[0] == b'@')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"._@/+-".contains(c))
        && !n.contains("..")
}

impl Verifier for PackageNames {
    fn name(&self) -> &'static str {
        "package-name"
    }
    fn verify(&self, cx: &VerifyContext<'_>) -> Result<(Verdict, String), String> {
        let ChangePayload::Packages(p) = cx.payload else {
            return pass("not a package change");
        };
        for n in p.apt.iter().chain(&p.npm) {
            if !safe_package_name(n) {
                return reject(format!("unsafe package name {n:?}"));
            }
        }
        pass("package names are safe")
    }
}

/// Tool names must be in the catalog and never a self-modifying name.
pub struct ToolCatalog;

impl Verifier for ToolCatalog {
    fn name(&self) -> &'static str {
        "tool-catalog"
    }
    fn verify(&self, cx: &VerifyContext<'_>) -> Result<(Verdict, String), String> {
        let names: &[String] = match cx.payload {
            ChangePayload::EnabledTools(
                ToolsChange::Replace(n) | ToolsChange::Add(n) | ToolsChange::Remove(n),
            ) => n,
            ChangePayload::CreateAgent(c) => &c.enabled_tools,
            _ => return pass("no tools named"),
        };
        for n in names {
            if ironclaw_contract::tools::is_forbidden(n) {
                return reject(format!("{n:?} is a forbidden tool name"));
            }
            if !ironclaw_contract::tools::is_known(n) {
                return reject(format!("{n:?} is not a tool this control plane provides"));
            }
        }
        pass("tools are in the catalog")
    }
}

/// Egress hosts are plain DNS names: no wildcards, schemes, ports, IP literals or
/// local names that would point a sandbox back at the host.
pub struct EgressHosts;

pub(crate) fn valid_egress_host(h: &str) -> Result<(), String> {
    if h.is_empty() || h.len() > 253 {
        return Err("length must be 1-253".into());
    }
    let lower = h.to_ascii_lowercase();
    if lower == "localhost"
        || lower.ends_with(".localhost")
        || lower.ends_with(".local")
        || lower.ends_with(".internal")
    {
        return Err("local names are not reachable egress".into());
    }
    let labels: Vec<&str> = lower.split('.').collect();
    if labels.len() < 2 {
        return Err("needs a dot (a fully qualified name)".into());
    }
    for l in &labels {
        let ok = !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-');
        if !ok {
            return Err(format!("label {l:?} is not a DNS label"));
        }
    }
    if labels
        .last()
        .is_some_and(|tld| tld.bytes().all(|c| c.is_ascii_digit()))
    {
        return Err("IP literals are not allowed".into());
    }
    Ok(())
}

impl Verifier for EgressHosts {
    fn name(&self) -> &'static str {
        "egress-host"
    }
    fn verify(&self, cx: &VerifyContext<'_>) -> Result<(Verdict, String), String> {
        let ChangePayload::Permissions(PermissionsChange::Egress(hosts)) = cx.payload else {
            return pass("not an egress change");
        };
        for h in hosts {
            if let Err(why) = valid_egress_host(h) {
                return reject(format!("egress host {h:?}: {why}"));
            }
        }
        pass("egress hosts are DNS names")
    }
}

/// A wiring must point at a messaging group that exists.
pub struct WiringTarget;

impl Verifier for WiringTarget {
    fn name(&self) -> &'static str {
        "wiring-target"
    }
    fn verify(&self, cx: &VerifyContext<'_>) -> Result<(Verdict, String), String> {
        let ChangePayload::Wiring(w) = cx.payload else {
            return pass("not a wiring change");
        };
        match cx.registry.messaging_group(&w.messaging_group_id) {
            Ok(Some(_)) => pass("messaging group exists"),
            Ok(None) => reject(format!(
                "messaging group {} does not exist",
                w.messaging_group_id
            )),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// A new agent group needs a free id; creating one always needs a human.
pub struct CreateAgent;

impl Verifier for CreateAgent {
    fn name(&self) -> &'static str {
        "create-agent"
    }
    fn verify(&self, cx: &VerifyContext<'_>) -> Result<(Verdict, String), String> {
        let ChangePayload::CreateAgent(c) = cx.payload else {
            return pass("not a create_agent change");
        };
        let id = c.group_id()?;
        match cx.registry.agent_group(&id) {
            Ok(Some(_)) => reject(format!("agent group {id} already exists")),
            Ok(None) => Ok((Verdict::RequireHuman, format!("creates agent group {id}"))),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// This control plane configures no MCP servers, so no grant can be honoured.
pub struct McpServers;

impl Verifier for McpServers {
    fn name(&self) -> &'static str {
        "mcp-server"
    }
    fn verify(&self, cx: &VerifyContext<'_>) -> Result<(Verdict, String), String> {
        let ChangePayload::McpAccess(m) = cx.payload else {
            return pass("not an MCP change");
        };
        reject(format!(
            "MCP server {:?} is not configured on this control plane",
            m.server
        ))
    }
}

/// Applies the change in a registry transaction that is always rolled back, so a
/// payload the registry would refuse (a control character in a persona, a duplicate
/// mount target, an unknown provider, …) is rejected at submit instead of reaching a
/// human and then failing to apply. Runs last, after the cheaper checks.
pub struct RegistryDryRun;

impl Verifier for RegistryDryRun {
    fn name(&self) -> &'static str {
        "registry-dry-run"
    }
    fn verify(&self, cx: &VerifyContext<'_>) -> Result<(Verdict, String), String> {
        use ironclaw_registry::RegistryError;
        let mut outcome = None;
        let rolled_back = cx.registry.write(|tx| {
            outcome = Some(crate::apply::apply(tx, cx.request, cx.payload));
            // Never commit: this is only a rehearsal.
            Err::<(), _>(RegistryError::Invalid {
                field: "dry run",
                reason: "rolled back".into(),
            })
        });
        match (outcome, rolled_back) {
            (Some(Ok(())), _) => pass("the registry accepts the change"),
            (
                Some(Err(
                    e @ (RegistryError::Invalid { .. }
                    | RegistryError::NotFound { .. }
                    | RegistryError::AlreadyExists { .. }),
                )),
                _,
            ) => reject(format!("the registry would refuse it: {e}")),
            (Some(Err(e)), _) => Err(e.to_string()),
            (None, Err(e)) => Err(e.to_string()),
            (None, Ok(())) => Err("dry run did not run".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names() {
        for ok in ["ripgrep", "@scope/pkg", "lib-foo_1.2", "g++"] {
            assert!(safe_package_name(ok), "{ok}");
        }
        for bad in [
            "; rm -rf /",
            "a && curl x",
            "$(whoami)",
            "`id`",
            "a|b",
            "",
            "-x",
            "a/../b",
            "a b",
        ] {
            assert!(!safe_package_name(bad), "{bad}");
        }
    }

    #[test]
    fn egress_hosts() {
        for ok in ["api.pagerduty.com", "Status.Example.com"] {
            assert!(valid_egress_host(ok).is_ok(), "{ok}");
        }
        for bad in [
            "*.example.com",
            "https://x.com",
            "x.com:443",
            "localhost",
            "10.0.0.1",
            "a..b",
            "-a.com",
            "com",
            "x.internal",
            "",
        ] {
            assert!(valid_egress_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn clean_paths() {
        assert_eq!(
            clean_absolute("/srv/m/a").unwrap(),
            PathBuf::from("/srv/m/a")
        );
        assert!(clean_absolute("/srv/m/../etc").is_none());
        assert!(clean_absolute("relative").is_none());
        for unplain in [
            "/srv/m/./a",
            "/srv//m/a",
            "/srv/m/a/",
            "//srv/m/a",
            "/srv/m/.",
        ] {
            assert!(clean_absolute(unplain).is_none(), "{unplain}");
        }
    }
}
