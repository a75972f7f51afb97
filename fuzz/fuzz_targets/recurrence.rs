//! Recurrences and Go-style durations parse or fail cleanly.
#![no_main]
use ironclaw_contract::actions::{parse_duration, Recurrence};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let _ = parse_duration(s);
    if let Ok(r) = Recurrence::parse(s) {
        assert!(r.interval().as_secs() >= 60);
    }
});
