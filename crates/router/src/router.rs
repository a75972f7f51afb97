//! The routing algorithm: one inbound event → the wirings of its messaging group, in
//! priority order → for each, engage, access, scope and ignore decisions → at most one
//! row per wiring in the right session's inbound queue.

use std::sync::Arc;
use std::time::Duration;

use ironclaw_contract::enums::{
    EngageMode, IgnoredMessagePolicy, MessageKind, SenderScope, UnknownSenderPolicy,
};
use ironclaw_contract::ids::{SessionId, UserId};
use ironclaw_contract::rows::{NewMessageIn, Route, MAX_CONTENT_BYTES};
use ironclaw_contract::time::Timestamp;
use ironclaw_gateway::Gateway;
use ironclaw_ingest::{
    Appended, InboundSink, Reason, RouteFailure, RouteInbound, RouteReport, RoutingOutcome,
};
use ironclaw_registry::{MessagingGroup, Registry, RegistryError, Wiring};

use crate::approval::{Approvals, Origin};
use crate::dedup::RecentMessages;
use crate::engage::PatternCache;
use crate::error::{RouteError, StopCause};
use crate::event::{self as checks, Checked, InboundEvent};
use crate::message_id::{self, MessageIds};
use crate::sender::{namespace_user_id, sender_principal};

/// Tunables of a [`Router`]. The defaults suit the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterConfig {
    /// How long a platform message id is remembered to drop the platform's retries
    /// (Slack retries within minutes). Zero turns deduplication off.
    pub dedup_window: Duration,
    /// At most this many platform message ids are remembered (oldest forgotten
    /// first). Zero turns deduplication off.
    pub dedup_capacity: usize,
    /// Compiled engage patterns kept (least recently used forgotten first).
    pub pattern_cache_capacity: usize,
    /// Under `request_approval`, at most this many requests from unknown senders to
    /// join one agent group wait at a time; more senders get `approval-limit`.
    pub max_pending_approvals_per_group: usize,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            dedup_window: Duration::from_secs(10 * 60),
            dedup_capacity: 10_000,
            pattern_cache_capacity: 256,
            max_pending_approvals_per_group: 16,
        }
    }
}

/// Routes inbound events. `Send + Sync`; share one behind an `Arc`. Its calls block on
/// the registry, the gateway and the sink: an async caller runs them on a blocking
/// thread.
pub struct Router {
    registry: Arc<Registry>,
    sink: Arc<dyn InboundSink>,
    approvals: Approvals,
    patterns: PatternCache,
    recent: RecentMessages,
    ids: MessageIds,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Router { .. }")
    }
}

/// One event, checked, with what every wiring needs.
struct Context<'a> {
    event: &'a InboundEvent,
    checked: Checked<'a>,
    mg: &'a MessagingGroup,
    /// `<channel_type>:<handle>`, for reasons.
    namespaced: String,
    /// The sender as a principal, when the handle can be one.
    sender: Option<UserId>,
}

impl Router {
    /// A router over the gateway's registry: the membership an approved
    /// `request_approval` change grants is written to the same registry the router
    /// reads access from.
    pub fn new(gateway: Arc<Gateway>, sink: Arc<dyn InboundSink>, config: RouterConfig) -> Self {
        Self {
            registry: gateway.registry().clone(),
            sink,
            approvals: Approvals::new(gateway, config.max_pending_approvals_per_group),
            patterns: PatternCache::new(config.pattern_cache_capacity),
            recent: RecentMessages::new(config.dedup_window, config.dedup_capacity),
            ids: MessageIds::new(),
        }
    }

    /// Routes one event to every wiring of its messaging group (creating the group,
    /// with the `strict` unknown-sender policy, on its first message).
    ///
    /// Returns one outcome per wiring and the sessions to wake; waking is the
    /// caller's. On a sink or registry failure mid-way, routing stops and
    /// [`RouteError::Stopped`] carries the outcomes so far.
    pub fn route_inbound(&self, event: &InboundEvent) -> Result<RouteReport, RouteError> {
        let checked = checks::check(event)?;
        let mg = self.messaging_group(event)?;
        let mut report = RouteReport::new(mg.id.clone());
        let claim = match checked.platform_message_id {
            Some(pmid) => match self.recent.claim(&mg.id, pmid) {
                Some(claim) => Some(claim),
                None => {
                    report.duplicate = true;
                    return Ok(report);
                }
            },
            None => None,
        };
        // From here on an early return drops the claim, so a retry is routed again.
        let wirings = self
            .registry
            .wirings_for(&mg.id)
            .map_err(RouteError::Registry)?;
        let namespaced = namespace_user_id(&event.channel_type, &event.sender_handle);
        let cx = Context {
            event,
            checked,
            mg: &mg,
            sender: sender_principal(&namespaced),
            namespaced,
        };
        for wiring in &wirings {
            match self.route_one(&cx, wiring) {
                Ok((outcome, wake)) => {
                    if let Some(session) = wake {
                        // Two wirings can share a session (agent-shared mode): ring it once.
                        if !report.wake.contains(&session) {
                            report.wake.push(session);
                        }
                    }
                    report.outcomes.push(outcome);
                }
                Err(cause) => {
                    return Err(RouteError::Stopped {
                        partial: Box::new(report),
                        cause,
                    })
                }
            }
        }
        if let Some(claim) = claim {
            claim.keep();
        }
        Ok(report)
    }

    /// The event's messaging group, created on first sight. A read first: nearly
    /// every message is for a group that exists, and the create path takes the
    /// registry's write lock.
    fn messaging_group(&self, event: &InboundEvent) -> Result<MessagingGroup, RouteError> {
        let refused = |e: RegistryError| match e {
            RegistryError::Invalid { field, reason } => RouteError::InvalidEvent { field, reason },
            other => RouteError::Registry(other),
        };
        let instance = event.instance.as_deref();
        if let Some(mg) = self
            .registry
            .find_messaging_group(&event.channel_type, &event.platform_id, instance)
            .map_err(refused)?
        {
            return Ok(mg);
        }
        // A new chat is closed to strangers until an operator opens it: failing
        // closed is the only safe default for a group nobody has looked at yet.
        self.registry
            .get_or_create_messaging_group(
                &event.channel_type,
                &event.platform_id,
                instance,
                false,
                UnknownSenderPolicy::Strict,
            )
            .map_err(refused)
    }

    /// One wiring. `Ok` carries the outcome and the session to wake, if any; `Err`
    /// stops routing of the event.
    fn route_one(
        &self,
        cx: &Context<'_>,
        w: &Wiring,
    ) -> Result<(RoutingOutcome, Option<SessionId>), StopCause> {
        let group = &w.agent_group_id;
        let outcome = |reason| RoutingOutcome::new(&w.id, group, reason);
        let event = cx.event;

        // 1. Engagement. A bad pattern is this wiring's problem only.
        let mut engaged = match self.patterns.evaluate(
            w.engage_mode,
            w.engage_pattern.as_deref(),
            &event.text,
            event.mentioned,
        ) {
            Ok(engaged) => engaged,
            Err(e) => {
                return Ok((
                    outcome(Reason::EngageEvalError).with_detail(e.to_string()),
                    None,
                ))
            }
        };
        // 2. Sticky continuation: once mentioned in a conversation, the agent keeps
        // listening to it — if, and only if, its session already exists.
        let mut sticky = false;
        if !engaged && w.engage_mode == EngageMode::MentionSticky {
            sticky = self
                .registry
                .find_session(group, &cx.mg.id, cx.checked.thread, w.session_mode)?
                .is_some();
            engaged = sticky;
        }

        // 3. Access, and the messaging group's policy for senders without it.
        let access = match &cx.sender {
            Some(user) => Some(self.registry.access(user, group)?),
            None => None,
        };
        let known = access.is_some_and(|a| a.allowed);
        if !known {
            let no_access = match &cx.sender {
                Some(_) => "no-access".to_owned(),
                None => format!(
                    "no-access ({:?} cannot be a principal id, so it holds no grant)",
                    cx.namespaced
                ),
            };
            match cx.mg.unknown_sender_policy {
                UnknownSenderPolicy::Strict => {
                    return Ok((outcome(Reason::AccessDenied).with_detail(no_access), None));
                }
                UnknownSenderPolicy::RequestApproval => {
                    let (Some(user), true) = (&cx.sender, engaged) else {
                        // Only a message meant for the agent asks a human; chatter in a
                        // group chat from strangers must not become a stream of requests.
                        let why = if engaged {
                            format!("{no_access}; no approval can be requested for it")
                        } else {
                            format!(
                                "{no_access}; approval is requested only by an engaging message"
                            )
                        };
                        return Ok((outcome(Reason::AccessDenied).with_detail(why), None));
                    };
                    let origin = Origin {
                        channel_type: &event.channel_type,
                        platform_id: &event.platform_id,
                        messaging_group: &cx.mg.id,
                        provenance: event.provenance,
                    };
                    let o = self.approvals.request_membership(
                        outcome(Reason::ApprovalRequested),
                        user,
                        group,
                        &origin,
                    );
                    return Ok((o, None));
                }
                // Anyone may engage; the sender scope below still applies.
                UnknownSenderPolicy::Public => {}
            }
        }

        // 4. Sender scope: `known` wirings listen to senders with access only. Under
        // `strict` every sender reaching here has access; under `public` this is
        // what keeps a known-only wiring closed.
        if w.sender_scope == SenderScope::Known && !known {
            return Ok((outcome(Reason::SenderScope), None));
        }

        // 5. Not engaging: drop, or keep as context.
        if !engaged && w.ignored_message_policy == IgnoredMessagePolicy::Drop {
            return Ok((outcome(Reason::Dropped), None));
        }

        // 6. Write. Too large is refused whole (truncating would hand the agent a
        // message nobody sent), before a session is created for it.
        if event.text.len() > MAX_CONTENT_BYTES {
            return Ok((
                outcome(Reason::ContentTooLarge).with_detail(format!(
                    "{} bytes; the limit is {MAX_CONTENT_BYTES}",
                    event.text.len()
                )),
                None,
            ));
        }
        let session =
            self.registry
                .resolve_session(group, &cx.mg.id, cx.checked.thread, w.session_mode)?;
        let now = Timestamp::now();
        let id = match cx.checked.platform_message_id {
            Some(pmid) => {
                message_id::for_platform(&cx.mg.id, &w.id, pmid).map_err(StopCause::MessageId)?
            }
            None => self.ids.mint(now).map_err(StopCause::Rng)?,
        };
        let msg = NewMessageIn {
            id,
            kind: MessageKind::Chat,
            timestamp: now,
            process_after: None,
            recurrence: None,
            series_id: None,
            trigger: engaged,
            route: Route {
                channel_type: Some(event.channel_type.clone()),
                platform_id: Some(event.platform_id.clone()),
                thread_id: cx.checked.thread.map(str::to_owned),
            },
            content: event.text.clone(),
            source_session_id: None,
            provenance: event.provenance,
        };
        if self.sink.append(&session.id, &msg)? == Appended::AlreadyQueued {
            let mut o = outcome(Reason::AlreadyQueued).with_detail(format!(
                "platform message {:?} is already in the session's queue",
                cx.checked.platform_message_id.unwrap_or_default()
            ));
            o.session_id = Some(session.id.clone());
            o.message_id = Some(msg.id);
            return Ok((o, None));
        }

        let mut why = Vec::with_capacity(2);
        if sticky {
            why.push("sticky continuation of an existing session".to_owned());
        }
        why.push(match access {
            Some(a) if a.allowed => format!("sender {}: {}", cx.namespaced, a.reason),
            _ => format!("sender {}: public messaging group", cx.namespaced),
        });
        let mut o = outcome(if engaged {
            Reason::Engaged
        } else {
            Reason::Accumulated
        })
        .with_detail(why.join("; "));
        o.engaged = engaged;
        o.session_id = Some(session.id.clone());
        o.message_id = Some(msg.id);
        Ok((o, engaged.then_some(session.id)))
    }
}

/// The ingest service's routing port: [`Router::route_inbound`], its error in the
/// port's terms (the [`RouteError`] kept as the source).
impl RouteInbound for Router {
    fn route(&self, event: &InboundEvent) -> Result<RouteReport, RouteFailure> {
        self.route_inbound(event).map_err(RouteFailure::from)
    }
}
