//! One finding of `ironctl doctor`: a [`Check`] with its [`Level`] (PASS, WARN, FAIL),
//! a detail line and, for anything but PASS, a one-line fix; and the constructors every
//! group of checks uses.
//!
//! Not for: any check itself (one file per group) or printing ([`super::run`]).

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Pass,
    Warn,
    Fail,
}

impl Level {
    pub(super) fn label(self) -> &'static str {
        match self {
            Level::Pass => "PASS",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        }
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub level: Level,
    pub detail: String,
    /// One line: what to do about it (absent for PASS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

pub(super) fn pass(name: &'static str, detail: impl Into<String>) -> Check {
    Check {
        name,
        level: Level::Pass,
        detail: detail.into(),
        fix: None,
    }
}

pub(super) fn warn(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        name,
        level: Level::Warn,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

pub(super) fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        name,
        level: Level::Fail,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

/// A daemon-dependent check that could not run.
pub(super) fn not_checked(name: &'static str) -> Check {
    fail(
        name,
        "not checked: the daemon could not be asked",
        "fix the `daemon` check first",
    )
}

/// A finding's level, for the unit tests of every group of checks.
#[cfg(test)]
pub(super) fn level(c: Check) -> Level {
    // Every non-PASS carries a fix; every PASS does not.
    assert_eq!(c.fix.is_some(), c.level != Level::Pass, "{c:?}");
    c.level
}
