//! `ironclaw-router`: inbound routing (DESIGN §6).
//!
//! For: taking one normalised channel message ([`InboundEvent`]) to the sessions it
//! belongs to, as the ingest service's routing port ([`RouteInbound`], implemented by
//! [`Router`]). [`Router::route_inbound`] finds (or creates) the messaging group,
//! namespaces the sender as `<channel_type>:<handle>`, and walks the group's wirings
//! in priority order; for each it decides engagement (`pattern`, `mention`,
//! `mention-sticky`), access (owner > global admin > scoped admin > member, then the
//! messaging group's unknown-sender policy: `strict`, `request_approval`, `public`),
//! sender scope and the ignored-message policy, resolves the session (shared,
//! per-thread, agent-shared) and appends one inbound row through an [`InboundSink`].
//! Every wiring yields a [`RoutingOutcome`] with a machine-readable [`Reason`]; the
//! [`RouteReport`] names the sessions to wake.
//!
//! Also here: [`webchat`], the policy of the web console chat (which operator may talk
//! to which agent group, and the messaging group and wiring a conversation needs).
//!
//! Not for: waking or launching sessions (the ingest service does, from the report),
//! opening queue files (the sink's implementation does), verifying platform signatures
//! (the channel adapter does, and says so in the event's provenance), or deciding
//! approval requests (a human does, through the gateway). The event, the report and
//! the ports are `ironclaw_ingest`'s, re-exported here.
//!
//! Stricter than the system it replaces: the unknown-sender policy is enforced (it
//! was stored and never read), a bad engage pattern is reported rather than silently
//! never matching, oversized messages are refused with a reason, platform retries are
//! dropped within a window, and a channel can neither claim host provenance nor mint
//! `sandbox:*` principals.

mod approval;
mod dedup;
mod engage;
mod error;
pub mod event;
mod message_id;
mod router;
mod sender;
pub mod webchat;

pub use error::{RouteError, StopCause};
pub use ironclaw_ingest::{
    Appended, InboundEvent, InboundSink, Reason, RouteFailure, RouteInbound, RouteReport,
    RoutingOutcome, SinkError,
};
pub use router::{Router, RouterConfig};
pub use sender::namespace_user_id;
pub use webchat::{WebChatError, WebChatOperator};
