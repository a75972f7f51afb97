//! The agent's tools: a registry that can hold only catalog tools (never a forbidden
//! name), their input schemas, and their implementations.
//!
//! Tools come in three sorts:
//!
//! - **local**: `read_file`, `write_file`, `list_dir` (confined to the [`Workspace`]),
//!   `list_destinations`, `read_persona`;
//! - **emitting**: `send_message` yields an [`Effect::Send`] — a chat row the engage loop
//!   writes to outbound;
//! - **host-forwarded**: `schedule_task`, `list_tasks`, `cancel_task`,
//!   `ask_user_question`, `request_capability_change` yield an [`Effect::SystemAction`]
//!   — a `kind = system` outbound row in the contract's wire format. They never act
//!   themselves; the host re-authorizes every one.
//!
//! Every invocation returns a [`ToolOutput`] or a [`ToolError`]; the model sees either
//! as text. No input, however malformed, panics.

use std::collections::BTreeMap;

use ironclaw_contract::actions::{
    parse_action, AskUserRequest, ScheduleRequest, SystemAction, WireError, ACTION_CANCEL_TASK,
    ACTION_LIST_TASKS,
};
use ironclaw_contract::enums::ChangeKind;
use ironclaw_contract::queue::InboundReader;
use ironclaw_contract::rows::{Route, MAX_CONTENT_BYTES};
use ironclaw_contract::tools::{is_forbidden, is_known, MANDATORY_TOOLS};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::conversation::ToolSpec;
use crate::workspace::{PathError, Workspace};

/// Longest task id `cancel_task` accepts.
pub const MAX_TASK_ID: usize = 128;

/// The tools this build implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tool {
    ReadFile,
    WriteFile,
    ListDir,
    SendMessage,
    ListDestinations,
    ScheduleTask,
    ListTasks,
    CancelTask,
    AskUserQuestion,
    RequestCapabilityChange,
    ReadPersona,
}

impl Tool {
    pub const ALL: &'static [Tool] = &[
        Tool::ReadFile,
        Tool::WriteFile,
        Tool::ListDir,
        Tool::SendMessage,
        Tool::ListDestinations,
        Tool::ScheduleTask,
        Tool::ListTasks,
        Tool::CancelTask,
        Tool::AskUserQuestion,
        Tool::RequestCapabilityChange,
        Tool::ReadPersona,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Tool::ReadFile => "read_file",
            Tool::WriteFile => "write_file",
            Tool::ListDir => "list_dir",
            Tool::SendMessage => "send_message",
            Tool::ListDestinations => "list_destinations",
            Tool::ScheduleTask => "schedule_task",
            Tool::ListTasks => "list_tasks",
            Tool::CancelTask => "cancel_task",
            Tool::AskUserQuestion => "ask_user_question",
            Tool::RequestCapabilityChange => "request_capability_change",
            Tool::ReadPersona => "read_persona",
        }
    }

    pub fn from_name(name: &str) -> Option<Tool> {
        Tool::ALL.iter().copied().find(|t| t.name() == name)
    }

    pub fn description(self) -> &'static str {
        match self {
            Tool::ReadFile => "Read a UTF-8 text file (at most 1 MiB) from the workspace. The path is relative to the workspace root.",
            Tool::WriteFile => "Create or overwrite a file in the workspace (at most 1 MiB), creating parent directories. The path is relative to the workspace root.",
            Tool::ListDir => "List a workspace directory (empty path = the root), sorted by name, at most 1000 entries.",
            Tool::SendMessage => "Send a chat message now: to the current thread (omit `to`) or to a named destination from list_destinations.",
            Tool::ListDestinations => "List the destinations send_message can reach.",
            Tool::ScheduleTask => "Ask the host to run a prompt as a message to you later (run_at, RFC 3339) and/or repeatedly (hourly, daily, weekly, or a duration of at least 1m such as 90m).",
            Tool::ListTasks => "Ask the host for your scheduled tasks; the answer arrives as a later message.",
            Tool::CancelTask => "Ask the host to cancel one of your scheduled tasks.",
            Tool::AskUserQuestion => "Ask the humans of this thread a question; their answer arrives as a later message.",
            Tool::RequestCapabilityChange => "Request a change to your own capabilities (persona, enabled tools, packages, wiring, permissions, mounts, MCP access, skills). A human must approve it; never claim it is applied.",
            Tool::ReadPersona => "Read the persona the operator configured for you.",
        }
    }

    /// The JSON schema of the tool's input.
    pub fn input_schema(self) -> Value {
        let string = |d: &str| json!({"type": "string", "description": d});
        let obj = |props: Value, required: &[&str]| {
            json!({
                "type": "object",
                "properties": props,
                "required": required,
                "additionalProperties": false,
            })
        };
        match self {
            Tool::ReadFile => obj(
                json!({"path": string("file path relative to the workspace")}),
                &["path"],
            ),
            Tool::WriteFile => obj(
                json!({"path": string("file path relative to the workspace"), "content": string("the full new content")}),
                &["path", "content"],
            ),
            Tool::ListDir => obj(
                json!({"path": string("directory relative to the workspace; empty for the root")}),
                &[],
            ),
            Tool::SendMessage => obj(
                json!({"text": string("the message"), "to": string("a destination name; omit for the current thread")}),
                &["text"],
            ),
            Tool::ListDestinations | Tool::ListTasks | Tool::ReadPersona => obj(json!({}), &[]),
            Tool::ScheduleTask => obj(
                json!({
                    "prompt": string("what to do when the task runs"),
                    "run_at": string("RFC 3339 time, e.g. 2026-06-16T09:00:00Z; omit for now"),
                    "recurrence": string("hourly, daily, weekly, or a duration such as 90m; omit for once"),
                }),
                &["prompt"],
            ),
            Tool::CancelTask => obj(
                json!({"task_id": string("the task to cancel")}),
                &["task_id"],
            ),
            Tool::AskUserQuestion => obj(
                json!({
                    "question": string("the question"),
                    "options": {"type": "array", "items": {"type": "string"}, "description": "answers to offer"},
                    "allow_freeform": {"type": "boolean", "description": "whether a free-text answer is accepted"},
                }),
                &["question"],
            ),
            Tool::RequestCapabilityChange => {
                let kinds: Vec<&str> = requestable_kinds().map(|k| k.as_str()).collect();
                obj(
                    json!({
                        "kind": {"type": "string", "enum": kinds},
                        "payload": {"type": "object", "description": "the requested change, e.g. {\"add\":[\"web_search\"]}"},
                        "reason": string("why the change is needed"),
                    }),
                    &["kind", "payload"],
                )
            }
        }
    }

    pub fn spec(self) -> ToolSpec {
        ToolSpec {
            name: self.name().to_owned(),
            description: self.description().to_owned(),
            input_schema: self.input_schema(),
        }
    }
}

/// The change kinds an agent may request for itself (`create_agent` is not one).
fn requestable_kinds() -> impl Iterator<Item = ChangeKind> {
    ChangeKind::ALL
        .iter()
        .copied()
        .filter(|k| *k != ChangeKind::CreateAgent)
}

/// Why a tool could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("tool name {name:?} is forbidden: it would let an agent change itself")]
    Forbidden { name: String },
    #[error("tool {name:?} is not in the tool catalog")]
    Unknown { name: String },
    #[error("tool {name:?} is already registered")]
    Duplicate { name: String },
}

/// What a successful tool call asks the engage loop to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// A chat message to `route`.
    Send { route: Route, content: String },
    /// A system-action body (already validated with [`parse_action`]).
    SystemAction { body: String },
}

/// A successful tool call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolOutput {
    /// What the model sees.
    pub text: String,
    pub effect: Option<Effect>,
}

impl ToolOutput {
    fn text(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            effect: None,
        }
    }
}

/// A failed tool call; its text is what the model sees.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("tool {name:?} is not offered to this agent")]
    NotOffered { name: String },
    #[error("{tool}: bad input: {reason}")]
    BadInput { tool: &'static str, reason: String },
    #[error(transparent)]
    Path(#[from] PathError),
    #[error("no workspace is mounted")]
    NoWorkspace,
    #[error("{0}")]
    Destination(String),
    #[error("queue: {0}")]
    Queue(String),
    #[error("{tool}: {source}")]
    Action {
        tool: &'static str,
        source: WireError,
    },
}

/// What tools may touch.
pub struct ToolContext<'a> {
    pub workspace: Option<&'a Workspace>,
    pub persona: &'a str,
    pub inbound: &'a mut dyn InboundReader,
}

/// The tools offered to one agent. Holds only catalog tools; a forbidden name can never
/// be registered.
#[derive(Debug, Clone, Default)]
pub struct ToolRegistry {
    tools: BTreeMap<&'static str, Tool>,
}

impl ToolRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every tool of the catalog.
    pub fn all() -> Self {
        Self {
            tools: Tool::ALL.iter().map(|t| (t.name(), *t)).collect(),
        }
    }

    /// The mandatory tools plus the agent group's `enabled` tools. Any forbidden or
    /// unknown name is refused (the whole list, so a misconfiguration is visible).
    /// Naming a mandatory tool or repeating a name is harmless.
    pub fn for_group<S: AsRef<str>>(enabled: &[S]) -> Result<Self, RegistryError> {
        let mut reg = Self::new();
        for name in MANDATORY_TOOLS {
            reg.register(name)?;
        }
        for name in enabled {
            match reg.register(name.as_ref()) {
                Ok(()) | Err(RegistryError::Duplicate { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(reg)
    }

    /// Registers a catalog tool by name.
    pub fn register(&mut self, name: &str) -> Result<(), RegistryError> {
        let folded = name.trim().to_ascii_lowercase();
        if is_forbidden(&folded) || is_forbidden(name) {
            return Err(RegistryError::Forbidden {
                name: name.to_owned(),
            });
        }
        let tool = match Tool::from_name(name) {
            Some(t) if is_known(name) => t,
            _ => {
                return Err(RegistryError::Unknown {
                    name: name.chars().take(80).collect(),
                })
            }
        };
        if self.tools.insert(tool.name(), tool).is_some() {
            return Err(RegistryError::Duplicate {
                name: name.to_owned(),
            });
        }
        Ok(())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tools.contains_key(name)
    }

    /// Registered names, sorted.
    pub fn names(&self) -> Vec<&'static str> {
        self.tools.keys().copied().collect()
    }

    /// The specs offered to the model, sorted by name.
    pub fn specs(&self) -> Vec<ToolSpec> {
        self.tools.values().map(|t| t.spec()).collect()
    }

    /// Runs a tool. `input` is the model's arguments (`null` counts as `{}`).
    pub fn invoke(
        &self,
        name: &str,
        input: &Value,
        ctx: &mut ToolContext<'_>,
    ) -> Result<ToolOutput, ToolError> {
        let tool = self
            .tools
            .get(name)
            .copied()
            .ok_or_else(|| ToolError::NotOffered {
                name: name.chars().take(80).collect(),
            })?;
        invoke(tool, input, ctx)
    }
}

fn decode<T: DeserializeOwned>(tool: Tool, input: &Value) -> Result<T, ToolError> {
    let value = match input {
        Value::Null => json!({}),
        Value::Object(_) => input.clone(),
        other => {
            return Err(ToolError::BadInput {
                tool: tool.name(),
                reason: format!("expected a JSON object, got {}", kind_of(other)),
            })
        }
    };
    serde_json::from_value(value).map_err(|e| ToolError::BadInput {
        tool: tool.name(),
        reason: e.to_string(),
    })
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn bad(tool: Tool, reason: impl Into<String>) -> ToolError {
    ToolError::BadInput {
        tool: tool.name(),
        reason: reason.into(),
    }
}

fn queue_err(e: ironclaw_contract::queue::QueueError) -> ToolError {
    ToolError::Queue(e.to_string())
}

/// Checks a body with the contract's parser (the host will run the same one), then
/// returns it as a system-action effect whose text is the body itself.
fn forward(tool: Tool, body: String) -> Result<ToolOutput, ToolError> {
    parse_action(body.as_bytes()).map_err(|source| ToolError::Action {
        tool: tool.name(),
        source,
    })?;
    Ok(ToolOutput {
        text: format!("submitted to the host: {body}"),
        effect: Some(Effect::SystemAction { body }),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PathInput {
    #[serde(default)]
    path: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteInput {
    path: String,
    content: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendInput {
    text: String,
    #[serde(default)]
    to: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoInput {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleInput {
    prompt: String,
    #[serde(default)]
    run_at: Option<String>,
    #[serde(default)]
    recurrence: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskIdInput {
    task_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AskInput {
    question: String,
    #[serde(default)]
    options: Vec<String>,
    #[serde(default)]
    allow_freeform: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CapabilityInput {
    kind: String,
    payload: Option<Value>,
    #[serde(default)]
    reason: Option<String>,
}

fn invoke(tool: Tool, input: &Value, ctx: &mut ToolContext<'_>) -> Result<ToolOutput, ToolError> {
    match tool {
        Tool::ReadFile => {
            let i: PathInput = decode(tool, input)?;
            let ws = ctx.workspace.ok_or(ToolError::NoWorkspace)?;
            Ok(ToolOutput::text(ws.read_file(&i.path)?))
        }
        Tool::WriteFile => {
            let i: WriteInput = decode(tool, input)?;
            let ws = ctx.workspace.ok_or(ToolError::NoWorkspace)?;
            let n = ws.write_file(&i.path, &i.content)?;
            Ok(ToolOutput::text(format!("wrote {n} bytes to {}", i.path)))
        }
        Tool::ListDir => {
            let i: PathInput = decode(tool, input)?;
            let ws = ctx.workspace.ok_or(ToolError::NoWorkspace)?;
            let listing = ws.list_dir(&i.path)?;
            Ok(ToolOutput::text(
                serde_json::to_string(&listing).unwrap_or_default(),
            ))
        }
        Tool::ReadPersona => {
            let _: NoInput = decode(tool, input)?;
            let text = if ctx.persona.trim().is_empty() {
                "(no persona configured for this agent group)".to_owned()
            } else {
                ctx.persona.to_owned()
            };
            Ok(ToolOutput::text(text))
        }
        Tool::ListDestinations => {
            let _: NoInput = decode(tool, input)?;
            let mut dests = ctx.inbound.destinations().map_err(queue_err)?;
            dests.sort_by(|a, b| a.name.cmp(&b.name));
            let list: Vec<Value> = dests
                .iter()
                .map(|d| {
                    let mut o = json!({"name": d.name});
                    if let Some(n) = &d.display_name {
                        o["display_name"] = json!(n);
                    }
                    if let Some(c) = &d.channel_type {
                        o["channel"] = json!(c);
                    }
                    o
                })
                .collect();
            Ok(ToolOutput::text(Value::Array(list).to_string()))
        }
        Tool::SendMessage => {
            let i: SendInput = decode(tool, input)?;
            if i.text.trim().is_empty() {
                return Err(bad(tool, "text is blank"));
            }
            if i.text.len() > MAX_CONTENT_BYTES {
                return Err(bad(
                    tool,
                    format!(
                        "text is {} bytes; the limit is {MAX_CONTENT_BYTES}",
                        i.text.len()
                    ),
                ));
            }
            let (label, route) = resolve_target(i.to.as_deref().unwrap_or(""), ctx)?;
            Ok(ToolOutput {
                text: format!("sent {} bytes to {label}", i.text.len()),
                effect: Some(Effect::Send {
                    route,
                    content: i.text,
                }),
            })
        }
        Tool::ScheduleTask => {
            let i: ScheduleInput = decode(tool, input)?;
            let req = ScheduleRequest {
                action: String::new(),
                prompt: i.prompt,
                run_at: i.run_at.unwrap_or_default().trim().to_owned(),
                recurrence: i.recurrence.unwrap_or_default().trim().to_owned(),
            };
            forward(tool, req.to_json())
        }
        Tool::ListTasks => {
            let _: NoInput = decode(tool, input)?;
            let body = SystemAction {
                action: ACTION_LIST_TASKS.to_owned(),
                payload: None,
                reason: None,
            }
            .to_json();
            forward(tool, body)
        }
        Tool::CancelTask => {
            let i: TaskIdInput = decode(tool, input)?;
            let id = i.task_id.trim();
            if id.is_empty() {
                return Err(bad(tool, "task_id is blank"));
            }
            if id.len() > MAX_TASK_ID {
                return Err(bad(
                    tool,
                    format!("task_id is {} bytes; the limit is {MAX_TASK_ID}", id.len()),
                ));
            }
            let body = SystemAction {
                action: ACTION_CANCEL_TASK.to_owned(),
                payload: Some(json!({"task_id": id})),
                reason: None,
            }
            .to_json();
            forward(tool, body)
        }
        Tool::AskUserQuestion => {
            let i: AskInput = decode(tool, input)?;
            let options = i
                .options
                .into_iter()
                .filter(|o| !o.trim().is_empty())
                .collect();
            forward(
                tool,
                AskUserRequest::new(i.question, options, i.allow_freeform).to_json(),
            )
        }
        Tool::RequestCapabilityChange => {
            let i: CapabilityInput = decode(tool, input)?;
            let kind: ChangeKind = i.kind.trim().parse().map_err(|_| {
                let kinds: Vec<&str> = requestable_kinds().map(|k| k.as_str()).collect();
                bad(
                    tool,
                    format!(
                        "unknown kind {:?}; one of: {}",
                        i.kind.chars().take(40).collect::<String>(),
                        kinds.join(", ")
                    ),
                )
            })?;
            if kind == ChangeKind::CreateAgent {
                return Err(bad(tool, "kind create_agent cannot be requested here"));
            }
            let payload = match i.payload {
                None | Some(Value::Null) => return Err(bad(tool, "payload is required")),
                Some(p @ Value::Object(_)) => p,
                Some(other) => {
                    return Err(bad(
                        tool,
                        format!("payload must be a JSON object, got {}", kind_of(&other)),
                    ))
                }
            };
            let reason = i
                .reason
                .map(|r| r.trim().to_owned())
                .filter(|r| !r.is_empty());
            let body = SystemAction {
                action: kind.as_str().to_owned(),
                payload: Some(payload),
                reason,
            }
            .to_json();
            forward(tool, body)
        }
    }
}

/// Names that mean "the thread this conversation is in".
const CURRENT_THREAD: &[&str] = &["", "current", "here", "thread", "current_thread", "this"];

fn resolve_target(to: &str, ctx: &mut ToolContext<'_>) -> Result<(String, Route), ToolError> {
    let folded = to.trim().to_ascii_lowercase();
    if CURRENT_THREAD.contains(&folded.as_str()) {
        let routing = ctx.inbound.session_routing().map_err(queue_err)?;
        return match routing {
            Some(r) if !r.channel_type.is_empty() && !r.platform_id.is_empty() => Ok((
                "the current thread".to_owned(),
                Route {
                    channel_type: Some(r.channel_type),
                    platform_id: Some(r.platform_id),
                    thread_id: r.thread_id,
                },
            )),
            _ => Err(ToolError::Destination(
                "no routing for the current thread yet; name a destination instead".to_owned(),
            )),
        };
    }
    let dests = ctx.inbound.destinations().map_err(queue_err)?;
    let Some(d) = dests.iter().find(|d| d.name.to_ascii_lowercase() == folded) else {
        let mut names: Vec<&str> = dests.iter().map(|d| d.name.as_str()).collect();
        names.sort_unstable();
        let known = if names.is_empty() {
            "none configured; reply in the current thread instead".to_owned()
        } else {
            names.join(", ")
        };
        return Err(ToolError::Destination(format!(
            "unknown destination {:?} (known: {known})",
            to.chars().take(80).collect::<String>()
        )));
    };
    match (&d.channel_type, &d.platform_id) {
        (Some(c), Some(p)) if !c.is_empty() && !p.is_empty() => Ok((
            d.name.clone(),
            Route {
                channel_type: Some(c.clone()),
                platform_id: Some(p.clone()),
                thread_id: None,
            },
        )),
        _ => Err(ToolError::Destination(format!(
            "destination {:?} has no channel/platform coordinates to send to",
            d.name
        ))),
    }
}
