//! Human-readable tables; `--json` prints the API's JSON instead.

use serde_json::Value;

/// Prints rows under headers, columns padded to their widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        println!("{}", s.trim_end());
    };
    line(headers.iter().map(|h| h.to_uppercase()).collect());
    for r in rows {
        line(r.clone());
    }
    if rows.is_empty() {
        println!("(none)");
    }
}

/// A string field, or "-".
pub fn s(v: &Value, pointer: &str) -> String {
    match v.pointer(pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".into(),
        Some(other) => other.to_string(),
    }
}

pub fn json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

/// Prints one change request in full.
pub fn change(v: &Value) {
    println!("id:           {}", s(v, "/request/id"));
    println!("kind:         {}", s(v, "/request/kind"));
    println!("agent group:  {}", s(v, "/request/agent_group_id"));
    println!("requested by: {}", s(v, "/request/requested_by"));
    println!("created:      {}", s(v, "/request/created_at"));
    println!("status:       {}", s(v, "/status"));
    if let Some(r) = v.pointer("/request/reason").and_then(Value::as_str) {
        println!("reason:       {r}");
    }
    println!("content hash: {}", s(v, "/request_hash"));
    if let Some(b) = v.pointer("/request/before").filter(|b| !b.is_null()) {
        println!("before:       {b}");
    }
    println!(
        "after:        {}",
        v.pointer("/request/after").cloned().unwrap_or(Value::Null)
    );
    if let Some(verdicts) = v.pointer("/verdicts").and_then(Value::as_array) {
        for vd in verdicts {
            println!(
                "  verifier {:<22} {:<14} {}",
                s(vd, "/verifier"),
                s(vd, "/verdict"),
                s(vd, "/reason")
            );
        }
    }
    if let Some(d) = v.pointer("/decision").filter(|d| !d.is_null()) {
        println!(
            "decision:     {} by {} at {}",
            s(d, "/outcome"),
            s(d, "/decided_by"),
            s(d, "/decided_at")
        );
    }
    if let Some(e) = v.pointer("/error").and_then(Value::as_str) {
        println!("apply error:  {e}");
    }
}
