//! The ingest service: verified events from any channel → routed → written → each
//! touched session woken once.
//!
//! Every inbound path calls it: platform webhooks (`POST /hooks/…`), the web chat
//! (`POST /v1/chat/send`) and Telegram long polling. What differs between them stays
//! with the caller: what a failure means for the platform (a 503 so it retries, a
//! batch fetched again) and whether an invalid event stops the rest ([`OnInvalid`]).

use std::sync::Arc;

use ironclaw_contract::ids::SessionId;

use crate::event::InboundEvent;
use crate::report::RouteReport;
use crate::route::{RouteFailure, RouteInbound};
use crate::wake::Wake;

/// What to do with an event the router refuses as invalid ([`RouteFailure::Invalid`]:
/// nothing was written for it, and routing it again can never succeed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnInvalid {
    /// Stop there, like any failure: a request's sender hears the refusal.
    Stop,
    /// Log it, skip it and route the rest: a polled batch has nobody to tell, and
    /// holding it back would block every event after it for good.
    Skip,
}

/// Routes verified events and wakes the sessions they engaged. Cheap to clone (two
/// shared handles); `Send + Sync`.
#[derive(Clone)]
pub struct Ingest {
    router: Arc<dyn RouteInbound>,
    waker: Arc<dyn Wake>,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ingest { .. }")
    }
}

/// What one [`Ingest::receive`] did.
#[derive(Debug, Default)]
pub struct Received {
    /// One report per event routed, in event order (an event skipped under
    /// [`OnInvalid::Skip`] has none; see `skipped`).
    pub reports: Vec<RouteReport>,
    /// Every session that got an engaging row, each once, in routing order — those of
    /// a routing that stopped part-way included. Each was woken.
    pub woken: Vec<SessionId>,
    /// Events refused as invalid and skipped (under [`OnInvalid::Skip`]): the index of
    /// each in the events given, and why.
    pub skipped: Vec<(usize, RouteFailure)>,
    /// The failure that stopped routing, if one did.
    pub stopped: Option<Stopped>,
}

/// Routing stopped at one event.
#[derive(Debug)]
pub struct Stopped {
    /// The index of the failed event in the events given. It and every event after it
    /// are not (fully) queued: a platform retry of each must be routed again, so an
    /// adapter that drops retries must forget them ([`Received::unrouted`]). The
    /// events before it are queued.
    pub index: usize,
    pub error: RouteFailure,
}

impl Received {
    /// The events of `events` (the ones given to [`Ingest::receive`]) that are not
    /// (fully) queued: from the one that stopped routing on; none when every event
    /// was queued or skipped.
    pub fn unrouted<'a>(&self, events: &'a [InboundEvent]) -> &'a [InboundEvent] {
        match &self.stopped {
            Some(s) => events.get(s.index..).unwrap_or_default(),
            None => &[],
        }
    }
}

impl Ingest {
    pub fn new(router: Arc<dyn RouteInbound>, waker: Arc<dyn Wake>) -> Self {
        Self { router, waker }
    }

    /// Routes `events` in order and wakes each session they engaged once. Stops at the
    /// first failure ([`Received::stopped`]); an invalid event stops it too under
    /// [`OnInvalid::Stop`]. The sessions engaged before a failure are woken all the
    /// same: their rows are written.
    ///
    /// Blocks on the router (registry and queue I/O); async callers use
    /// [`Ingest::receive_async`]. Waking does not block (see [`Wake::wake`]).
    pub fn receive(&self, events: &[InboundEvent], on_invalid: OnInvalid) -> Received {
        let mut received = Received::default();
        for (index, event) in events.iter().enumerate() {
            match self.router.route(event) {
                Ok(report) => {
                    let outcomes: Vec<String> =
                        report.outcomes.iter().map(|o| o.to_string()).collect();
                    tracing::info!(channel = %event.channel_type, platform = %event.platform_id, duplicate = report.duplicate, outcomes = ?outcomes, "inbound message routed");
                    add_once(&mut received.woken, &report.wake);
                    received.reports.push(report);
                }
                Err(error @ RouteFailure::Invalid(_)) if on_invalid == OnInvalid::Skip => {
                    tracing::warn!(channel = %event.channel_type, platform = %event.platform_id, error = %error, "inbound message refused by the router; skipped");
                    received.skipped.push((index, error));
                }
                Err(error) => {
                    add_once(&mut received.woken, error.partial_wake());
                    received.stopped = Some(Stopped { index, error });
                    break;
                }
            }
        }
        for session in &received.woken {
            self.waker.wake(session);
        }
        received
    }

    /// [`Ingest::receive`] on a blocking thread. `Err` only when that thread panicked
    /// or the runtime is shutting down (then what was routed is unknown).
    pub async fn receive_async(
        &self,
        events: Vec<InboundEvent>,
        on_invalid: OnInvalid,
    ) -> Result<(Vec<InboundEvent>, Received), tokio::task::JoinError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let received = this.receive(&events, on_invalid);
            (events, received)
        })
        .await
    }
}

fn add_once(into: &mut Vec<SessionId>, sessions: &[SessionId]) {
    for s in sessions {
        if !into.contains(s) {
            into.push(s.clone());
        }
    }
}
