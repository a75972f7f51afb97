//! The `model provider` check: whether the daemon has a real model provider (what it
//! reports is authoritative), or else whether one is configured here (variable names
//! only, never values).
//!
//! Not for: testing a provider key against the provider (doctor contacts no provider).

use super::finding::{fail, pass, warn, Check};

/// Variables that give the model proxy a real provider (a key, or a local server).
pub(super) const PROVIDER_VARS: &[&str] = &[
    "ANTHROPIC_API_KEY",
    "OPENAI_API_KEY",
    "OPENROUTER_API_KEY",
    "OLLAMA_BASE_URL",
    "IRONCLAW_OPENAI_COMPAT_BASE_URL",
];

/// Which model providers exist.
#[derive(Debug, Clone)]
pub struct ProviderFacts {
    /// What the daemon reports (`/v1/status` → `model_proxy.providers`); authoritative.
    pub daemon: Option<Vec<String>>,
    /// Provider variables set in this environment or the env file (names only).
    pub configured: Vec<String>,
}

pub fn check_provider(f: &ProviderFacts) -> Check {
    const N: &str = "model provider";
    let fix = "set ANTHROPIC_API_KEY (or OPENAI_API_KEY, OPENROUTER_API_KEY, OLLAMA_BASE_URL, IRONCLAW_OPENAI_COMPAT_BASE_URL) in the daemon's env file and restart it";
    match &f.daemon {
        Some(list) => {
            let real: Vec<&str> = list
                .iter()
                .map(String::as_str)
                .filter(|p| *p != "mock")
                .collect();
            if !real.is_empty() {
                pass(N, format!("the daemon has: {}", real.join(", ")))
            } else if !list.is_empty() {
                warn(
                    N,
                    "the daemon has only the mock provider: agents give canned answers",
                    fix,
                )
            } else {
                fail(
                    N,
                    "the daemon has no model provider: agents cannot reach a model",
                    fix,
                )
            }
        }
        None if !f.configured.is_empty() => pass(
            N,
            format!(
                "set here (values not shown; the daemon was not asked): {}",
                f.configured.join(", ")
            ),
        ),
        None => fail(
            N,
            "no provider variable in this environment or the env file",
            fix,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::finding::level;
    use crate::doctor::finding::Level;

    #[test]
    fn provider_branches() {
        let l = |daemon: Option<&[&str]>, configured: &[&str]| {
            level(check_provider(&ProviderFacts {
                daemon: daemon.map(|d| d.iter().map(|s| (*s).to_owned()).collect()),
                configured: configured.iter().map(|s| (*s).to_owned()).collect(),
            }))
        };
        assert_eq!(l(Some(&["anthropic", "mock"]), &[]), Level::Pass);
        assert_eq!(l(Some(&["mock"]), &["ANTHROPIC_API_KEY"]), Level::Warn);
        assert_eq!(l(Some(&[]), &["ANTHROPIC_API_KEY"]), Level::Fail);
        assert_eq!(l(None, &["ANTHROPIC_API_KEY"]), Level::Pass);
        assert_eq!(l(None, &[]), Level::Fail);
    }
}
