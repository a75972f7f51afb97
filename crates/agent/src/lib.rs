//! `ironclaw-agent`: the agent that runs inside each IronClaw sandbox.
//!
//! Synchronous std code that links only `ironclaw-contract` (plus serde and thiserror),
//! so the sandbox binary stays small and static.
//!
//! - [`workspace`]: the file jail (`/workspace`): relative paths only, no `..`, no
//!   symlink escape, size caps;
//! - [`tools`]: the [`ToolRegistry`](tools::ToolRegistry) (catalog tools only, never a
//!   forbidden name; the mandatory tools always offered) and the tool implementations;
//!   host-forwarded tools only produce system-action rows;
//! - [`conversation`]: the provider-neutral conversation, tool specs, calls and turns;
//! - [`provider`]: the [`Provider`](provider::Provider) trait and the deterministic
//!   [`MockProvider`](provider::MockProvider);
//! - [`http`], [`remote`]: a minimal HTTP/1.1 client over the model-proxy unix socket,
//!   and the Anthropic Messages and OpenAI Chat Completions providers on top of it;
//! - [`engage`]: one engage over a batch of inbound messages — the bounded tool loop and
//!   idempotent outbound writes;
//! - [`runner`]: the poll loop around engages — heartbeat, doorbell, backoff with a
//!   circuit breaker, the corrupt-queue exit.

pub mod conversation;
pub mod engage;
pub mod http;
pub mod provider;
pub mod remote;
pub mod runner;
pub mod tools;
pub mod workspace;

pub use conversation::{Block, Conversation, Message, ModelTurn, Role, ToolCall, ToolSpec};
pub use engage::{Agent, EngageError, EngageReport, DEFAULT_MAX_TURNS};
pub use provider::{MockProvider, Provider, ProviderError};
pub use remote::{AnthropicProvider, OpenAiProvider};
pub use runner::{Backoff, Doorbell, Exit, LoopConfig, NoDoorbell, PollLoop, SocketDoorbell, Step};
pub use tools::{RegistryError, Tool, ToolContext, ToolError, ToolOutput, ToolRegistry};
pub use workspace::{PathError, Workspace};
