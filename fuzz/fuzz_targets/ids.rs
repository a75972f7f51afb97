//! Id validation never panics, and an accepted session id is one plain path component.
#![no_main]
use ironclaw_contract::ids::{AgentGroupId, ChangeId, MessageId, SessionId, UserId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(id) = SessionId::new(s) {
        let p = std::path::Path::new(id.as_str());
        assert_eq!(p.components().count(), 1);
        assert!(matches!(p.components().next(), Some(std::path::Component::Normal(_))));
    }
    let _ = AgentGroupId::new(s);
    let _ = ChangeId::new(s);
    let _ = MessageId::new(s);
    if let Ok(u) = UserId::new(s) {
        let _ = u.is_sandbox();
    }
});
