//! Timestamps parse or fail cleanly; the canonical form round-trips.
#![no_main]
use ironclaw_contract::time::Timestamp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(t) = Timestamp::parse(s) {
        assert_eq!(Timestamp::parse(&t.to_canonical()).expect("canonical parses"), t);
    }
});
