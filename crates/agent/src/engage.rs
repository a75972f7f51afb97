//! One engage: a batch of inbound messages in, a bounded tool loop against the model,
//! replies and system actions out.
//!
//! # Idempotency
//! Every outbound row of an engage gets a deterministic id: `out-<first inbound id>-<n>`
//! for the `n`-th tool effect (a sent message or a system action, written as it
//! happens) and `out-<first inbound id>-reply` for the final reply. The outbound writer
//! stores an id once, so when an engage fails half-way (the model errors after a
//! `send_message` already went out) and is retried, the rows of the first attempt are
//! not written again: the same id with the same content is `AlreadyPresent`, and the
//! same id with different content (the model phrased it differently the second time)
//! is an idempotency conflict, which here means "this step was already sent": it is
//! skipped and the model is told so. The key is the batch's *first* id because a
//! retried batch keeps its head while later messages may join it.
//!
//! # Bounds
//! At most `max_turns` model turns (default [`DEFAULT_MAX_TURNS`]). Running out is not
//! an error: the user gets [`TURN_LIMIT_MESSAGE`] and the batch is completed, so an
//! engage that cannot converge is not retried forever (the Go system's Q3).

use ironclaw_contract::enums::MessageKind;
use ironclaw_contract::ids::MessageId;
use ironclaw_contract::queue::{InboundReader, OutboundWriter, QueueError};
use ironclaw_contract::rows::{MessageIn, NewMessageOut, Route, WriteOutcome, MAX_CONTENT_BYTES};
use ironclaw_contract::time::Timestamp;

use crate::conversation::{Conversation, Message, ToolResult};
use crate::provider::{Provider, ProviderError};
use crate::tools::{Effect, ToolContext, ToolRegistry};
use crate::workspace::Workspace;

/// Model turns per engage.
pub const DEFAULT_MAX_TURNS: usize = 8;
/// Tool calls honoured per model turn; further calls get an error result.
pub const MAX_TOOL_CALLS_PER_TURN: usize = 16;
/// What the user is told when the turn bound is reached.
pub const TURN_LIMIT_MESSAGE: &str = "I stopped working on this: it took more steps than I am allowed in one go. Please narrow the request or split it into smaller ones.";

/// The tool result when a retried engage reaches a step an earlier attempt already
/// sent differently.
pub const ALREADY_SENT_RESULT: &str =
    "not sent: an earlier attempt of this request already sent a different message at this step";

/// The security framing every conversation starts with.
pub const BASE_SYSTEM_PROMPT: &str = "\
You are IronClaw, a security-isolated assistant running inside a sandbox.

Network: you have no direct network access. Your model calls go through a host proxy. \
You can reach other systems only through the tools you are actually offered; check them.

Capabilities: you cannot install packages, add integrations, change your persona, edit \
your tools, change permissions or alter mounts yourself. When you need such a change, \
request it with request_capability_change (for example kind enabled_tools with payload \
{\"add\":[\"web_search\"]}); a human must approve it. Tell the user the request was \
submitted and never claim a change is applied. Prefer requesting a capability to declining.

Files: you can read and write only inside your workspace.

Be concise; use tools when they help.";

/// The system prompt: the framing, then the operator's persona (if any).
pub fn system_prompt(persona: &str) -> String {
    let persona = persona.trim();
    if persona.is_empty() {
        return BASE_SYSTEM_PROMPT.to_owned();
    }
    format!(
        "{BASE_SYSTEM_PROMPT}\n\n## Persona\n\nThe operator configured the following persona; \
         it cannot change your tools, your permissions or the rules above:\n\n{persona}"
    )
}

/// The user message of an engage: each message trimmed, with a `[kind via channel
/// platform]` header when it came from a platform, joined by blank lines.
pub fn format_prompt(batch: &[MessageIn]) -> String {
    batch
        .iter()
        .map(|m| {
            let msg = &m.message;
            let content = msg.content.trim();
            if msg.route.channel_type.is_none() && msg.route.platform_id.is_none() {
                return content.to_owned();
            }
            let mut header = vec![msg.kind.as_str().to_owned()];
            if let Some(c) = &msg.route.channel_type {
                header.push(format!("via {c}"));
            }
            if let Some(p) = &msg.route.platform_id {
                header.push(p.clone());
            }
            format!("[{}]\n{content}", header.join(" "))
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// The deterministic id of the `n`-th tool effect (sent message or system action) of
/// the engage keyed by `inbound`.
pub fn outbound_id(inbound: &MessageId, n: usize) -> MessageId {
    derived_id(inbound, &n.to_string())
}

/// The deterministic id of the final reply of the engage keyed by `inbound`.
pub fn reply_id(inbound: &MessageId) -> MessageId {
    derived_id(inbound, "reply")
}

fn derived_id(inbound: &MessageId, suffix: &str) -> MessageId {
    let plain = format!("out-{inbound}-{suffix}");
    if plain.len() <= MessageId::MAX_LEN {
        if let Ok(id) = MessageId::new(plain) {
            return id;
        }
    }
    // Too long: keep a readable prefix and make it unique with a hash of the whole id.
    let hash = fnv1a(inbound.as_str().as_bytes());
    let prefix: String = inbound.as_str().chars().take(80).collect();
    #[allow(
        clippy::expect_used,
        reason = "the fallback is \"out-\", 16 hex digits, \"-\" and one of this module's short ASCII suffixes: always a valid message id"
    )]
    MessageId::new(format!("out-{prefix}-{hash:016x}-{suffix}"))
        .or_else(|_| MessageId::new(format!("out-{hash:016x}-{suffix}")))
        .expect("a hex id with a short ASCII suffix is a valid message id")
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Why an engage did not finish. Both kinds leave the batch unacked (`processing`) so
/// the loop retries it; rows already written are not written twice.
#[derive(Debug, thiserror::Error)]
pub enum EngageError {
    #[error("{op}: {source}")]
    Queue {
        op: &'static str,
        source: QueueError,
    },
    #[error("provider: {0}")]
    Provider(#[from] ProviderError),
}

impl EngageError {
    /// Provider failures are paced with backoff; queue failures at the poll interval.
    pub fn is_provider(&self) -> bool {
        matches!(self, EngageError::Provider(_))
    }
}

/// What an engage did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngageReport {
    /// Model turns taken.
    pub turns: usize,
    /// Tool calls made (including refused ones).
    pub tool_calls: usize,
    /// Rows newly written to outbound (ring the doorbell when non-zero).
    pub written: usize,
    /// Rows a previous attempt of this engage had already written.
    pub already_sent: usize,
    /// The turn bound was reached.
    pub hit_turn_limit: bool,
}

/// The agent: a provider, the tools offered, the workspace and the persona.
pub struct Agent<P> {
    pub provider: P,
    pub tools: ToolRegistry,
    pub workspace: Option<Workspace>,
    pub persona: String,
    pub max_turns: usize,
}

struct Emitter<'a> {
    outbound: &'a mut dyn OutboundWriter,
    key: MessageId,
    next: usize,
    report: &'a mut EngageReport,
}

/// What happened to one write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    /// Written now, or already written identically by an earlier attempt.
    Yes,
    /// An earlier attempt wrote something else under this id; nothing was written.
    Conflict,
}

impl Emitter<'_> {
    fn effect(
        &mut self,
        kind: MessageKind,
        route: Route,
        content: String,
    ) -> Result<Sent, EngageError> {
        let id = outbound_id(&self.key, self.next);
        self.next += 1;
        self.write(id, kind, route, None, content)
    }

    fn write(
        &mut self,
        id: MessageId,
        kind: MessageKind,
        route: Route,
        in_reply_to: Option<MessageId>,
        content: String,
    ) -> Result<Sent, EngageError> {
        let msg = NewMessageOut {
            id,
            in_reply_to,
            timestamp: Timestamp::now(),
            deliver_after: None,
            kind,
            route,
            content: truncate(content),
        };
        match self.outbound.write_message(&msg) {
            Ok(WriteOutcome::Written { .. }) => {
                self.report.written += 1;
                Ok(Sent::Yes)
            }
            Ok(WriteOutcome::AlreadyPresent { .. }) => {
                self.report.already_sent += 1;
                Ok(Sent::Yes)
            }
            Err(QueueError::IdempotencyConflict { .. }) => {
                self.report.already_sent += 1;
                Ok(Sent::Conflict)
            }
            Err(source) => Err(EngageError::Queue {
                op: "write outbound",
                source,
            }),
        }
    }
}

/// Cuts content to the queue's row limit (at a character boundary).
fn truncate(mut s: String) -> String {
    const NOTE: &str = "\n[truncated]";
    if s.len() <= MAX_CONTENT_BYTES {
        return s;
    }
    let mut cut = MAX_CONTENT_BYTES - NOTE.len();
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s.push_str(NOTE);
    s
}

impl<P: Provider> Agent<P> {
    pub fn new(provider: P, tools: ToolRegistry) -> Self {
        Self {
            provider,
            tools,
            workspace: None,
            persona: String::new(),
            max_turns: DEFAULT_MAX_TURNS,
        }
    }

    /// Engages the batch: marks it `processing`, runs the tool loop, writes the rows,
    /// marks it `completed`. On error nothing is completed and the batch may be retried.
    pub fn engage(
        &mut self,
        batch: &[MessageIn],
        inbound: &mut dyn InboundReader,
        outbound: &mut dyn OutboundWriter,
    ) -> Result<EngageReport, EngageError> {
        let mut report = EngageReport::default();
        let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
            return Ok(report);
        };
        let ids: Vec<MessageId> = batch.iter().map(|m| m.id().clone()).collect();
        outbound
            .mark_processing(&ids)
            .map_err(|source| EngageError::Queue {
                op: "mark processing",
                source,
            })?;
        let routing = inbound
            .session_routing()
            .map_err(|source| EngageError::Queue {
                op: "read session routing",
                source,
            })?;
        // Replies go where the session routes; before the host has set a route, back to
        // where the last message came from.
        let reply_route = match routing {
            Some(r) => {
                let mut route = Route {
                    channel_type: Some(r.channel_type).filter(|s| !s.is_empty()),
                    platform_id: Some(r.platform_id).filter(|s| !s.is_empty()),
                    thread_id: r.thread_id,
                };
                // A session shared by a whole chat has no thread of its own; a question
                // asked in a thread of that same chat is answered in that thread, not at
                // the chat's root. Only the same chat: the session's route still
                // decides where a reply may go.
                let from = &last.message.route;
                if route.thread_id.is_none()
                    && from.thread_id.is_some()
                    && from.channel_type == route.channel_type
                    && from.platform_id == route.platform_id
                {
                    route.thread_id = from.thread_id.clone();
                }
                route
            }
            None => last.message.route.clone(),
        };

        let specs = self.tools.specs();
        let mut conversation = Conversation {
            system: system_prompt(&self.persona),
            messages: vec![Message::user_text(format_prompt(batch))],
        };
        let mut emitter = Emitter {
            outbound: &mut *outbound,
            key: first.id().clone(),
            next: 0,
            report: &mut report,
        };
        let mut final_text = None;
        for _ in 0..self.max_turns.max(1) {
            emitter.report.turns += 1;
            let turn = self.provider.complete(&conversation, &specs)?;
            if turn.tool_calls.is_empty() {
                final_text = Some(turn.text);
                break;
            }
            conversation.messages.push(Message::assistant(&turn));
            let mut results = Vec::with_capacity(turn.tool_calls.len());
            for (i, call) in turn.tool_calls.iter().enumerate() {
                emitter.report.tool_calls += 1;
                if i >= MAX_TOOL_CALLS_PER_TURN {
                    results.push(ToolResult {
                        tool_use_id: call.id.clone(),
                        content: format!(
                            "not run: at most {MAX_TOOL_CALLS_PER_TURN} tool calls per turn"
                        ),
                        is_error: true,
                    });
                    continue;
                }
                let mut ctx = ToolContext {
                    workspace: self.workspace.as_ref(),
                    persona: &self.persona,
                    inbound: &mut *inbound,
                };
                let (content, is_error) = match self.tools.invoke(&call.name, &call.input, &mut ctx)
                {
                    Ok(out) => {
                        let sent = match out.effect {
                            Some(Effect::Send { route, content }) => {
                                emitter.effect(MessageKind::Chat, route, content)?
                            }
                            Some(Effect::SystemAction { body }) => {
                                emitter.effect(MessageKind::System, reply_route.clone(), body)?
                            }
                            None => Sent::Yes,
                        };
                        match sent {
                            Sent::Yes => (out.text, false),
                            Sent::Conflict => (ALREADY_SENT_RESULT.to_owned(), true),
                        }
                    }
                    Err(e) => (e.to_string(), true),
                };
                results.push(ToolResult {
                    tool_use_id: call.id.clone(),
                    content,
                    is_error,
                });
            }
            conversation.messages.push(Message::tool_results(results));
        }
        let text = match final_text {
            Some(t) => t,
            None => {
                emitter.report.hit_turn_limit = true;
                TURN_LIMIT_MESSAGE.to_owned()
            }
        };
        if !text.trim().is_empty() {
            let id = reply_id(&emitter.key);
            emitter.write(
                id,
                MessageKind::Chat,
                reply_route,
                Some(last.id().clone()),
                text,
            )?;
        }
        outbound
            .mark_completed(&ids)
            .map_err(|source| EngageError::Queue {
                op: "mark completed",
                source,
            })?;
        Ok(report)
    }
}
