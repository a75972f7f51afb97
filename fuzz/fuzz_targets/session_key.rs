//! Key files: 32 raw bytes or 64 hex digits, anything else a typed error.
#![no_main]
use ironclaw_contract::key::SessionKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(k) = SessionKey::parse(data) {
        let again = SessionKey::parse(k.to_hex().as_bytes()).expect("hex form parses");
        assert!(again == k);
    }
});
