//! Every byte string is a system action or a typed error; a valid one re-serializes to
//! something that parses to the same value.
#![no_main]
use ironclaw_contract::actions::{parse_action, ActionBody};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(body) = parse_action(data) {
        let again = match &body {
            ActionBody::Schedule(r) => r.to_json(),
            ActionBody::AskUser(r) => r.to_json(),
            ActionBody::Envelope(a) => a.to_json(),
        };
        let reparsed = parse_action(again.as_bytes()).expect("a re-serialized action parses");
        assert_eq!(reparsed.name(), body.name());
    }
});
