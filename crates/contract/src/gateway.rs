//! The change-request protocol: what a gateway holds, how verifiers answer, and what a
//! human decides. Storage, verifiers and appliers are host crates; only the shapes
//! every party agrees on are here.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::enums::{ChangeKind, Outcome, Verdict};
use crate::ids::{AgentGroupId, ChangeId, UserId};
use crate::time::Timestamp;

/// Why a gateway protocol document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("{what} is not valid: {reason}")]
    Invalid { what: &'static str, reason: String },
}

/// A request to change what an agent group may do, as stored by the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeRequest {
    pub id: ChangeId,
    pub kind: ChangeKind,
    pub agent_group_id: AgentGroupId,
    pub requested_by: UserId,
    /// The relevant state before the change, when the gateway recorded it.
    #[serde(default)]
    pub before: Option<Value>,
    /// The requested state: a per-kind payload, validated by the gateway.
    pub after: Value,
    #[serde(default)]
    pub reason: Option<String>,
    pub created_at: Timestamp,
}

impl ChangeRequest {
    /// A canonical byte form: fixed field order, object keys sorted, no insignificant
    /// whitespace. Two requests with the same content have the same bytes, so a hash of
    /// them binds an approval to exactly what was stored.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        // `serde_json::Value` keeps object keys in a sorted map, and struct fields
        // serialize in declaration order, so plain serialization is canonical.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, ProtocolError> {
        serde_json::from_slice(bytes).map_err(|e| ProtocolError::Invalid {
            what: "change request",
            reason: e.to_string(),
        })
    }
}

/// One verifier's answer about one change request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifierVerdict {
    pub verifier: String,
    pub verdict: Verdict,
    pub reason: String,
}

/// A decision on a change request, made by an authenticated principal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    pub outcome: Outcome,
    pub decided_by: UserId,
    pub decided_at: Timestamp,
    /// The content hash of the request this decision was made on (hex SHA-256 of
    /// [`ChangeRequest::canonical_bytes`]).
    pub request_hash: String,
}

impl Decision {
    pub fn from_json(bytes: &[u8]) -> Result<Self, ProtocolError> {
        serde_json::from_slice(bytes).map_err(|e| ProtocolError::Invalid {
            what: "decision",
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> ChangeRequest {
        ChangeRequest {
            id: ChangeId::new("chg_0123").unwrap(),
            kind: ChangeKind::Persona,
            agent_group_id: AgentGroupId::new("g1").unwrap(),
            requested_by: UserId::new("slack:alice").unwrap(),
            before: None,
            after: serde_json::json!({"z": 1, "a": {"y": 2, "b": 3}}),
            reason: None,
            created_at: Timestamp::parse("2026-06-16T09:00:00Z").unwrap(),
        }
    }

    #[test]
    fn canonical_bytes_sort_keys_and_round_trip() {
        let req = sample();
        let bytes = req.canonical_bytes();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.contains(r#""after":{"a":{"b":3,"y":2},"z":1}"#),
            "{text}"
        );
        assert_eq!(ChangeRequest::from_json(&bytes).unwrap(), req);
        // Reordered input keys give the same canonical bytes.
        let shuffled = br#"{"created_at":"2026-06-16T09:00:00Z","after":{"a":{"b":3,"y":2},"z":1},"requested_by":"slack:alice","agent_group_id":"g1","kind":"persona","id":"chg_0123"}"#;
        assert_eq!(
            ChangeRequest::from_json(shuffled)
                .unwrap()
                .canonical_bytes(),
            bytes
        );
    }

    #[test]
    fn unknown_fields_and_kinds_are_refused() {
        assert!(ChangeRequest::from_json(br#"{"id":"c","kind":"set_persona","agent_group_id":"g","requested_by":"u","after":{},"created_at":"2026-06-16T09:00:00Z"}"#).is_err());
        let mut v: Value = serde_json::from_slice(&sample().canonical_bytes()).unwrap();
        v["approved"] = Value::Bool(true);
        assert!(ChangeRequest::from_json(v.to_string().as_bytes()).is_err());
        assert!(Decision::from_json(br#"{"outcome":"maybe","decided_by":"u","decided_at":"2026-06-16T09:00:00Z","request_hash":""}"#).is_err());
    }

    proptest! {
        #[test]
        fn parsers_are_total(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = ChangeRequest::from_json(&b);
            let _ = Decision::from_json(&b);
        }
    }
}
