//! A builder for `NewMessageIn`, the inbound row the host writes.

use ironclaw_contract::enums::{MessageKind, Provenance};
use ironclaw_contract::ids::{MessageId, SessionId};
use ironclaw_contract::rows::{NewMessageIn, Route};
use ironclaw_contract::time::Timestamp;

/// An inbound message under construction. [`message_in`] (or `new`) takes the id and
/// content; the rest defaults to an ordinary verified chat message that engages the
/// agent now: kind `Chat`, timestamp now, `trigger` true, an empty route, no schedule,
/// recurrence, series or source session, provenance `Verified`.
///
/// ```
/// use ironclaw_contract::enums::Provenance;
/// use ironclaw_testkit::message_in;
///
/// let m = message_in("m1", "hello")
///     .route("slack", "C1")
///     .thread("t9")
///     .trigger(false)
///     .provenance(Provenance::Unverified)
///     .build();
/// assert_eq!(m.route.thread_id.as_deref(), Some("t9"));
/// ```
#[derive(Debug, Clone)]
#[must_use = "call .build() for the NewMessageIn"]
pub struct MessageInBuilder(NewMessageIn);

/// [`MessageInBuilder::new`]: a message with this id and content, every other field at
/// its default.
pub fn message_in(id: impl Into<String>, content: impl Into<String>) -> MessageInBuilder {
    MessageInBuilder::new(id, content)
}

impl MessageInBuilder {
    /// A message with this id and content and every other field at its default.
    /// Panics on an invalid id (a bug in the test).
    pub fn new(id: impl Into<String>, content: impl Into<String>) -> Self {
        let id = id.into();
        let id = MessageId::new(id.as_str()).unwrap_or_else(|e| panic!("message id {id:?}: {e}"));
        Self(NewMessageIn {
            id,
            kind: MessageKind::Chat,
            timestamp: Timestamp::now(),
            process_after: None,
            recurrence: None,
            series_id: None,
            trigger: true,
            route: Route::default(),
            content: content.into(),
            source_session_id: None,
            provenance: Provenance::Verified,
        })
    }

    pub fn kind(mut self, kind: MessageKind) -> Self {
        self.0.kind = kind;
        self
    }

    pub fn timestamp(mut self, at: Timestamp) -> Self {
        self.0.timestamp = at;
        self
    }

    /// The conversation the message came from; the thread is left as it was.
    pub fn route(
        mut self,
        channel_type: impl Into<String>,
        platform_id: impl Into<String>,
    ) -> Self {
        self.0.route.channel_type = Some(channel_type.into());
        self.0.route.platform_id = Some(platform_id.into());
        self
    }

    pub fn thread(mut self, thread_id: impl Into<String>) -> Self {
        self.0.route.thread_id = Some(thread_id.into());
        self
    }

    pub fn trigger(mut self, trigger: bool) -> Self {
        self.0.trigger = trigger;
        self
    }

    /// Schedules the message (it is written `scheduled`, not `queued`).
    pub fn process_after(mut self, at: Timestamp) -> Self {
        self.0.process_after = Some(at);
        self
    }

    pub fn recurrence(mut self, recurrence: impl Into<String>) -> Self {
        self.0.recurrence = Some(recurrence.into());
        self
    }

    pub fn series(mut self, series_id: impl Into<String>) -> Self {
        self.0.series_id = Some(series_id.into());
        self
    }

    /// Marks the message as sent by another agent's session.
    pub fn source_session(mut self, session: SessionId) -> Self {
        self.0.source_session_id = Some(session);
        self
    }

    pub fn provenance(mut self, provenance: Provenance) -> Self {
        self.0.provenance = provenance;
        self
    }

    pub fn build(self) -> NewMessageIn {
        self.0
    }
}

impl From<MessageInBuilder> for NewMessageIn {
    fn from(m: MessageInBuilder) -> Self {
        m.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_a_verified_triggering_chat_message_due_now() {
        let before = Timestamp::now();
        let m = message_in("m1", "hello").build();
        assert_eq!(m.id.as_str(), "m1");
        assert_eq!(m.content, "hello");
        assert_eq!(m.kind, MessageKind::Chat);
        assert!(m.timestamp >= before && m.timestamp <= Timestamp::now());
        assert_eq!(m.process_after, None);
        assert_eq!(m.recurrence, None);
        assert_eq!(m.series_id, None);
        assert!(m.trigger);
        assert_eq!(m.route, Route::default());
        assert_eq!(m.source_session_id, None);
        assert_eq!(m.provenance, Provenance::Verified);
    }

    #[test]
    fn every_setter_sets_its_field() {
        let at = Timestamp::parse("2020-01-01T00:00:00Z").unwrap();
        let src = SessionId::new("ses_other").unwrap();
        let m = message_in(String::from("m2"), String::from("x"))
            .kind(MessageKind::Task)
            .timestamp(at)
            .route("web", "c1")
            .thread("t9")
            .trigger(false)
            .process_after(at)
            .recurrence("daily")
            .series("s1")
            .source_session(src.clone())
            .provenance(Provenance::Host)
            .build();
        assert_eq!(
            m,
            NewMessageIn {
                id: MessageId::new("m2").unwrap(),
                kind: MessageKind::Task,
                timestamp: at,
                process_after: Some(at),
                recurrence: Some("daily".into()),
                series_id: Some("s1".into()),
                trigger: false,
                route: Route {
                    channel_type: Some("web".into()),
                    platform_id: Some("c1".into()),
                    thread_id: Some("t9".into()),
                },
                content: "x".into(),
                source_session_id: Some(src),
                provenance: Provenance::Host,
            }
        );
    }
}
