//! Change requests and decisions: strict JSON, total parsers, canonical bytes stable.
#![no_main]
use ironclaw_contract::gateway::{ChangeRequest, Decision};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = ChangeRequest::from_json(data) {
        let bytes = r.canonical_bytes();
        let again = ChangeRequest::from_json(&bytes).expect("canonical bytes parse");
        assert_eq!(again.canonical_bytes(), bytes);
    }
    let _ = Decision::from_json(data);
});
