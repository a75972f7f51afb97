//! The daemon's env file (`env file`): mode and owner (it holds provider keys and
//! tokens), and the names — never the values — of the variables it sets, plus
//! `IRONCLAW_API_ADDR` (an address, not a secret) for the address check.
//!
//! Not for: deciding whether a provider is configured ([`super::provider`]) or checking
//! the bind address ([`super::network`]).

use std::path::{Path, PathBuf};

use super::files::{observe, unreadable, PathFacts, Seen};
use super::finding::{fail, pass, warn, Check};

/// The default env file of a deployed daemon (read for variable names only).
pub const DEFAULT_ENV_FILE: &str = "/etc/ironclaw/ironclaw.env";

/// The daemon's env file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvFileFacts {
    /// Not there, and not asked for explicitly: nothing to check.
    Absent,
    /// Asked for with `--env-file` but not there.
    Missing(PathBuf),
    Unreadable(PathBuf, String),
    Present {
        path: PathBuf,
        facts: PathFacts,
        /// Variables set to a non-empty value (names only).
        names: Vec<String>,
    },
}

pub fn check_env_file(f: &EnvFileFacts) -> Option<Check> {
    const N: &str = "env file";
    Some(match f {
        EnvFileFacts::Absent => return None,
        EnvFileFacts::Missing(p) => fail(
            N,
            format!("{} does not exist", p.display()),
            "create it (mode 0600) or drop --env-file",
        ),
        EnvFileFacts::Unreadable(p, why) => unreadable(N, p, why),
        EnvFileFacts::Present { path, facts, .. } if facts.mode & 0o077 != 0 => fail(
            N,
            format!(
                "{} has mode {:o}: it holds provider keys and tokens",
                path.display(),
                facts.mode
            ),
            format!("chmod 600 {}, and rotate what it holds", path.display()),
        ),
        EnvFileFacts::Present { path, facts, .. } if facts.uid != 0 => warn(
            N,
            format!("{} is owned by uid {}, not root", path.display(), facts.uid),
            format!("chown root:root {}", path.display()),
        ),
        EnvFileFacts::Present { path, facts, .. } => pass(
            N,
            format!("{}: mode {:o}, owner root", path.display(), facts.mode),
        ),
    })
}

/// Names (never values) of the variables an env file sets to something non-empty, and
/// `IRONCLAW_API_ADDR`'s value (an address, not a secret).
fn parse_env_file(text: &str) -> (Vec<String>, Option<String>) {
    let mut names = Vec::new();
    let mut bind = None;
    for line in text.lines() {
        let line = line.trim();
        let line = line.strip_prefix("export ").unwrap_or(line);
        if line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim().trim_matches(|c| c == '"' || c == '\'');
        if v.is_empty() {
            continue;
        }
        let k = k.trim();
        if k == "IRONCLAW_API_ADDR" {
            bind = Some(v.to_owned());
        }
        names.push(k.to_owned());
    }
    (names, bind)
}

pub(super) fn probe_env_file(explicit: Option<&Path>) -> (EnvFileFacts, Option<String>) {
    let path = explicit.unwrap_or(Path::new(DEFAULT_ENV_FILE));
    match observe(path) {
        Seen::Missing if explicit.is_some() => (EnvFileFacts::Missing(path.to_owned()), None),
        Seen::Missing => (EnvFileFacts::Absent, None),
        Seen::Unreadable(why) => (EnvFileFacts::Unreadable(path.to_owned(), why), None),
        Seen::Present(facts) => match std::fs::read_to_string(path) {
            Ok(text) => {
                let (names, bind) = parse_env_file(&text);
                (
                    EnvFileFacts::Present {
                        path: path.to_owned(),
                        facts,
                        names,
                    },
                    bind,
                )
            }
            Err(e) => (
                EnvFileFacts::Unreadable(path.to_owned(), e.to_string()),
                None,
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::finding::level;
    use crate::doctor::finding::Level;

    #[test]
    fn env_file_branches_and_parsing() {
        assert_eq!(check_env_file(&EnvFileFacts::Absent), None);
        let p = PathBuf::from("/etc/ironclaw/ironclaw.env");
        let l = |f: EnvFileFacts| level(check_env_file(&f).unwrap());
        assert_eq!(l(EnvFileFacts::Missing(p.clone())), Level::Fail);
        assert_eq!(
            l(EnvFileFacts::Unreadable(p.clone(), "EACCES".into())),
            Level::Warn
        );
        let present = |mode, uid| EnvFileFacts::Present {
            path: p.clone(),
            facts: PathFacts {
                mode,
                uid,
                is_dir: false,
                is_file: true,
                is_symlink: false,
                len: 10,
            },
            names: vec![],
        };
        assert_eq!(l(present(0o644, 0)), Level::Fail);
        assert_eq!(l(present(0o600, 1000)), Level::Warn);
        assert_eq!(l(present(0o600, 0)), Level::Pass);

        let (names, bind) = parse_env_file(
            "# comment\nANTHROPIC_API_KEY=sk-secret\nexport OPENAI_API_KEY=\"\"\nIRONCLAW_API_ADDR='100.70.0.1:8787'\nnot a line\n",
        );
        assert_eq!(names, ["ANTHROPIC_API_KEY", "IRONCLAW_API_ADDR"]);
        assert_eq!(bind.as_deref(), Some("100.70.0.1:8787"));
        assert!(!format!("{names:?}").contains("sk-secret"));
    }
}
