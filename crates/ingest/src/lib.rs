//! `ironclaw-ingest`: receiving a message, with one owner for every channel (DESIGN §6:
//! channel → ingest → queue → agent).
//!
//! For: the host side of an inbound message after its channel adapter verified it.
//! [`Ingest::receive`] takes [`InboundEvent`]s from any channel (platform webhooks, the
//! web chat, Telegram long polling), routes each through the [`RouteInbound`] port (the
//! router, which writes rows through the [`InboundSink`] port), stops at the first
//! failure and says which events were not queued, and wakes each touched session once
//! through the [`Wake`] port.
//!
//! | module | for |
//! |---|---|
//! | [`event`] | [`InboundEvent`], the normalised message every adapter yields |
//! | [`report`] | [`RouteReport`]: one [`RoutingOutcome`] per wiring, with a [`Reason`] |
//! | [`route`] | the routing port [`RouteInbound`] and its [`RouteFailure`] |
//! | [`sink`] | the queue-write port [`InboundSink`] ([`Appended`], [`SinkError`]) |
//! | [`wake`] | the wake port [`Wake`] |
//! | [`service`] | the [`Ingest`] service |
//!
//! Not for: verifying platform requests (the channel adapters), routing rules (the
//! router), queue files and session keys (the session manager, behind the sink and
//! wake ports, which the daemon implements). This crate depends on the contract alone
//! among ours, so the channel adapters that yield events stay free of the router, the
//! registry and SQLCipher.

pub mod event;
pub mod report;
pub mod route;
pub mod service;
pub mod sink;
pub mod wake;

pub use event::InboundEvent;
pub use report::{Reason, RouteReport, RoutingOutcome};
pub use route::{RouteFailure, RouteInbound};
pub use service::{Ingest, OnInvalid, Received, Stopped};
pub use sink::{Appended, InboundSink, SinkError};
pub use wake::Wake;
