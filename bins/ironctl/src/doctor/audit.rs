//! The `audit chain` check: the daemon's verification of its audit log, or, when the
//! daemon cannot be asked, an offline verification of the state dir's log.
//!
//! Not for: finding or repairing a bad record (`ironctl audit verify` shows it; nothing
//! repairs it).

use std::path::PathBuf;

use serde_json::Value;

use super::finding::{fail, not_checked, pass, Check};

/// `/v1/audit/verify`, or the offline check of the state dir's log when the daemon
/// cannot be asked.
#[derive(Debug, Clone)]
pub enum AuditFacts {
    Daemon(Value),
    Offline(PathBuf, Result<(u64, u64), String>),
    Unknown,
}

pub fn check_audit(f: &AuditFacts) -> Check {
    const N: &str = "audit chain";
    let fix = "do not restart over it: find the first bad record with `ironctl audit verify --state-dir DIR`, compare with a backup, and investigate who edited it";
    match f {
        AuditFacts::Daemon(v) if v.pointer("/ok") == Some(&Value::Bool(true)) => pass(
            N,
            format!(
                "intact: {} records, last seq {} (verified by the daemon)",
                v.pointer("/records").cloned().unwrap_or_default(),
                v.pointer("/last_seq").cloned().unwrap_or_default()
            ),
        ),
        AuditFacts::Daemon(v) => fail(
            N,
            format!(
                "BROKEN: {}",
                v.pointer("/error")
                    .and_then(Value::as_str)
                    .unwrap_or("the daemon says the chain does not verify")
            ),
            fix,
        ),
        AuditFacts::Offline(p, Ok((records, last))) => pass(
            N,
            format!(
                "intact: {records} records, last seq {last} ({} read directly; the daemon was not asked)",
                p.display()
            ),
        ),
        AuditFacts::Offline(p, Err(e)) => fail(N, format!("{}: {e}", p.display()), fix),
        AuditFacts::Unknown => not_checked(N),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::finding::level;
    use crate::doctor::finding::Level;
    use serde_json::json;

    #[test]
    fn audit_branches() {
        let l = |f: AuditFacts| level(check_audit(&f));
        assert_eq!(
            l(AuditFacts::Daemon(
                json!({"ok": true, "records": 5, "last_seq": 5})
            )),
            Level::Pass
        );
        assert_eq!(
            l(AuditFacts::Daemon(
                json!({"ok": false, "error": "seq 3: hash mismatch"})
            )),
            Level::Fail
        );
        let p = PathBuf::from("/var/lib/ironclaw/audit.jsonl");
        assert_eq!(l(AuditFacts::Offline(p.clone(), Ok((5, 5)))), Level::Pass);
        assert_eq!(
            l(AuditFacts::Offline(p, Err("seq 3: bad".into()))),
            Level::Fail
        );
        assert_eq!(l(AuditFacts::Unknown), Level::Fail);
    }
}
