//! One record of the chain and its canonical bytes.

use ironclaw_contract::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::AuditEvent;

/// The `prev_hash` of the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The longest line (without its newline) the log writes or accepts. Records are small
/// (events carry no payloads); the cap keeps a verifier from reading an arbitrarily
/// long garbage "line" into memory.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// One line of the audit log.
///
/// The event is kept as a `serde_json::Value` so that records written by a newer
/// version, with event types this one does not know, can still be verified and shown;
/// [`AuditRecord::event`] types it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
// An extra top-level field would not be covered by the hash, so it is refused.
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    pub seq: u64,
    pub time: Timestamp,
    pub prev_hash: String,
    pub event: Value,
    pub hash: String,
}

/// A record's event is not an [`AuditEvent`] this version knows (typically a newer
/// daemon's event type).
#[derive(Debug, thiserror::Error)]
#[error("audit record {seq}: event of type {event_type:?} is not one this version understands: {source}")]
pub struct EventError {
    pub seq: u64,
    /// The event's `type` field, or `<missing>`.
    pub event_type: String,
    #[source]
    pub source: serde_json::Error,
}

impl AuditRecord {
    /// The typed event.
    pub fn event(&self) -> Result<AuditEvent, EventError> {
        AuditEvent::deserialize(&self.event).map_err(|source| EventError {
            seq: self.seq,
            event_type: self
                .event
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("<missing>")
                .chars()
                .take(80)
                .collect(),
            source,
        })
    }
}

/// The bytes a record's hash covers, the hash, and the full line (without `\n`).
pub(crate) struct Encoded {
    pub hash: String,
    pub line: Vec<u8>,
}

/// Encodes a record canonically: `{"seq":…,"time":…,"prev_hash":…,"event":…}` is
/// hashed, and the line is the same bytes with `,"hash":"…"` inserted before the final
/// brace. Writer and verifier both use this one function, so "canonical" has a single
/// definition.
pub(crate) fn encode(
    seq: u64,
    time: &Timestamp,
    prev_hash: &str,
    event: &Value,
) -> Result<Encoded, serde_json::Error> {
    let mut buf = Vec::with_capacity(256);
    buf.extend_from_slice(b"{\"seq\":");
    buf.extend_from_slice(seq.to_string().as_bytes());
    buf.extend_from_slice(b",\"time\":");
    serde_json::to_writer(&mut buf, &time.to_canonical())?;
    buf.extend_from_slice(b",\"prev_hash\":");
    serde_json::to_writer(&mut buf, prev_hash)?;
    buf.extend_from_slice(b",\"event\":");
    write_canonical(event, &mut buf)?;
    buf.push(b'}');

    let hash = ironclaw_contract::hex::encode(&Sha256::digest(&buf));

    // The line is the hashed object with one more field: drop its closing brace (just
    // pushed above, so present) and append the hash.
    buf.pop();
    buf.extend_from_slice(b",\"hash\":\"");
    buf.extend_from_slice(hash.as_bytes());
    buf.extend_from_slice(b"\"}");
    Ok(Encoded { hash, line: buf })
}

/// Compact JSON with object keys sorted bytewise at every depth.
///
/// This is what `serde_json::to_vec` gives for a `Value` with the default (sorted)
/// `Map`, but written out here so that the hash does not change if some other crate in
/// the build turns on serde_json's `preserve_order` feature (feature unification would
/// silently switch the map to insertion order).
fn write_canonical(v: &Value, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, k)?;
                out.push(b':');
                write_canonical(v, out)?;
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(v, out)?;
            }
            out.push(b']');
        }
        // Scalars have one compact form each.
        scalar => serde_json::to_writer(&mut *out, scalar)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Serialize)]
    struct Hashed<'a> {
        seq: u64,
        time: &'a Timestamp,
        prev_hash: &'a str,
        event: &'a Value,
    }

    #[test]
    fn canonical_bytes_are_serde_jsons_for_the_four_field_struct() {
        let time = Timestamp::parse("2026-06-16T12:34:56.5Z").unwrap();
        let event = json!({"type": "x", "b": [1, {"z": null, "a": "é\"\n"}], "a": true, "n": -3});
        let enc = encode(7, &time, GENESIS_HASH, &event).unwrap();
        let reference = serde_json::to_vec(&Hashed {
            seq: 7,
            time: &time,
            prev_hash: GENESIS_HASH,
            event: &event,
        })
        .unwrap();
        assert_eq!(
            enc.hash,
            ironclaw_contract::hex::encode(&Sha256::digest(&reference))
        );
        let line = String::from_utf8(enc.line).unwrap();
        assert!(line
            .starts_with(r#"{"seq":7,"time":"2026-06-16T12:34:56.500000000Z","prev_hash":"000"#));
        assert!(
            line.contains(r#""event":{"a":true,"b":[1,{"a":"é\"\n","z":null}],"n":-3,"type":"x"}"#)
        );
        assert!(line.ends_with(&format!(r#","hash":"{}"}}"#, enc.hash)));
        let back: AuditRecord = serde_json::from_str(&line).unwrap();
        assert_eq!(back.hash, enc.hash);
        assert_eq!(back.event, event);
    }

    #[test]
    fn hex_is_lowercase_and_64_wide() {
        let h = ironclaw_contract::hex::encode(&Sha256::digest(b""));
        assert_eq!(
            h,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(GENESIS_HASH.len(), 64);
    }
}
