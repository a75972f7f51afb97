//! `ironclaw-delivery`: what happens to everything an agent writes (DESIGN §6).
//!
//! For each session, woken by its doorbell or a 2 s fallback tick, delivery reads the
//! outbound rows it has not finished and, for each one, in seq order:
//! - **chat** → destination check (the session's own conversation, or a destination
//!   the agent group was granted) → the channel's [`Dispatcher`];
//! - **to another agent** (`channel_type = "agent"`) → only with an explicit grant,
//!   under a hop limit and a per-group send quota ([`a2a`]);
//! - **system actions** → re-authorized here ([`actions`]): privileged ones become
//!   change requests by `sandbox:<session>`, unknown ones are refused, `schedule_task`
//!   becomes a validated future inbound row, task list/cancel act on the session's
//!   own tasks, `ask_user_question` is posted to the thread's humans.
//!
//! Every finished row is recorded in the session's inbound `delivered` table — durable
//! dedup, so a restart never re-delivers — as `delivered` or `dead_letter`. A failing
//! row is retried with backoff ([`retry`]) without blocking the rows after it, and is
//! dead-lettered (visible to operators) after [`retry::MAX_ATTEMPTS`] or on a permanent
//! error. Delivery also retires inbound rows the agent completed, and enqueues the next
//! occurrence of a completed recurring task.
//!
//! Not here: routing (router), launching (session manager), platform protocols
//! (channels: this crate only sees the [`Dispatcher`] trait).

pub mod a2a;
pub mod actions;
pub mod retry;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ironclaw_contract::enums::{MessageKind, Status};
use ironclaw_contract::ids::{MessageId, SessionId};
use ironclaw_contract::queue::{InboundReader, InboundWriter, OutboundReader, QueueError};
use ironclaw_contract::rows::{AckCursor, MessageOut, MAX_BATCH};
use ironclaw_contract::time::Timestamp;
use ironclaw_gateway::Gateway;
use ironclaw_queue::EncryptedInboundWriter;
use ironclaw_registry::{Registry, Session};
use ironclaw_session::{QueueAccessError, SessionManager};

pub use a2a::A2aLimits;
pub use retry::{Failure, RetryState};

/// The fallback poll when no doorbell rings.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// Where a chat message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub channel_type: String,
    /// The adapter instance of the session's messaging group (for its own conversation).
    pub instance: Option<String>,
    pub platform_id: String,
    pub thread_id: Option<String>,
}

/// Sends text to a channel. The daemon implements it over `ironclaw-channels`; tests
/// use an in-memory one. Called from a blocking thread.
pub trait Dispatcher: Send + Sync {
    /// Returns the platform's id of the sent message, if it gives one. `message_id` (the
    /// outbound row id) lets an adapter resume a split message instead of repeating
    /// the parts it already sent.
    fn send(
        &self,
        to: &Address,
        text: &str,
        message_id: &MessageId,
    ) -> Result<Option<String>, Failure>;
}

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("session {0}: {1}")]
    Session(SessionId, String),
    #[error("queue: {0}")]
    Queue(#[from] QueueError),
    #[error("registry: {0}")]
    Registry(#[from] ironclaw_registry::RegistryError),
}

/// A queue the session manager could not open: a key failure is the session's, an
/// open failure the queue's (as it was when delivery opened queues itself).
fn queue_access(sid: &SessionId, e: QueueAccessError) -> DeliveryError {
    match e {
        QueueAccessError::Open(e) => DeliveryError::Queue(QueueError::from(e)),
        other => DeliveryError::Session(sid.clone(), other.to_string()),
    }
}

/// What one pass over a session did (for logs, metrics and tests).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    pub delivered: usize,
    pub dead_lettered: usize,
    pub retrying: usize,
    pub retired: usize,
}

#[derive(Default)]
struct SessionCursor {
    /// Acks already processed.
    acks: Option<AckCursor>,
    /// Every outbound row with a seq at or below this one is finished.
    outbound_seq: i64,
    /// Where a pass that ran out of time stopped.
    resume_after: Option<i64>,
}

/// How long one pass may deliver for one session before the loop moves on to the
/// others (the rest of its backlog waits for the next pass, at most a poll away).
pub const PASS_BUDGET: Duration = Duration::from_secs(2);

pub struct Delivery {
    manager: Arc<SessionManager>,
    registry: Arc<Registry>,
    gateway: Arc<Gateway>,
    dispatcher: Arc<dyn Dispatcher>,
    retries: std::sync::Mutex<RetryState>,
    cursors: std::sync::Mutex<HashMap<SessionId, SessionCursor>>,
    a2a: a2a::A2a,
}

impl Delivery {
    pub fn new(
        manager: Arc<SessionManager>,
        registry: Arc<Registry>,
        gateway: Arc<Gateway>,
        dispatcher: Arc<dyn Dispatcher>,
        limits: A2aLimits,
    ) -> Self {
        Self {
            manager,
            registry,
            gateway,
            dispatcher,
            retries: std::sync::Mutex::default(),
            cursors: std::sync::Mutex::default(),
            a2a: a2a::A2a::new(limits),
        }
    }

    /// Runs forever: a pass over a session whenever its agent rings, and over every
    /// session each [`POLL_INTERVAL`].
    pub async fn run(self: Arc<Self>, mut rung: tokio::sync::mpsc::UnboundedReceiver<SessionId>) {
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let sessions: Vec<SessionId> = tokio::select! {
                Some(sid) = rung.recv() => {
                    let mut v = vec![sid];
                    while let Ok(more) = rung.try_recv() {
                        if !v.contains(&more) { v.push(more); }
                    }
                    v
                }
                _ = tick.tick() => match self.registry.sessions() {
                    Ok(all) => all.into_iter().map(|s| s.id).collect(),
                    Err(e) => { tracing::warn!(error = %e, "delivery: listing sessions failed"); continue; }
                },
            };
            for sid in sessions {
                let this = Arc::clone(&self);
                let id = sid.clone();
                match tokio::task::spawn_blocking(move || this.pass(&id)).await {
                    Ok(Ok(r)) if r != PassReport::default() => {
                        tracing::info!(session = %sid, delivered = r.delivered, dead_lettered = r.dead_lettered, retrying = r.retrying, retired = r.retired, "delivery pass")
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(session = %sid, error = %e, "delivery pass failed")
                    }
                    Err(e) => tracing::error!(session = %sid, error = %e, "delivery task failed"),
                }
            }
        }
    }

    /// One pass over one session: retire completed inbound rows, then handle every
    /// unfinished outbound row that is due. Blocking.
    pub fn pass(&self, sid: &SessionId) -> Result<PassReport, DeliveryError> {
        if !self.manager.layout().outbound_db(sid).exists() {
            return Ok(PassReport::default());
        }
        let session = self
            .registry
            .session(sid)?
            .ok_or_else(|| DeliveryError::Session(sid.clone(), "not in the registry".into()))?;
        let mut outbound = self
            .manager
            .outbound_reader(sid)
            .map_err(|e| queue_access(sid, e))?;
        let mut inbound = self
            .manager
            .inbound_writer(sid)
            .map_err(|e| queue_access(sid, e))?;
        let mut report = PassReport {
            retired: self.retire_completed(sid, &mut outbound, &mut inbound)?,
            ..PassReport::default()
        };

        // Rows are read from the session's cursor on: every row at or below it is
        // finished (delivered or dead-lettered). Without it each pass re-read the whole
        // outbound file, and a session with more than a page of replies (`MAX_BATCH`)
        // saw only its first page: nothing after it was ever delivered.
        let now = Timestamp::now();
        let (start, resume) = self
            .cursor_lock()
            .get(sid)
            .map_or((0, None), |c| (c.outbound_seq, c.resume_after));
        // A pass that ran out of time goes on where it stopped; the cursor advances
        // only in passes that read from it, which see the rows after it in order.
        let mut after = resume.filter(|r| *r > start).unwrap_or(start);
        let from_cursor = after == start;
        let mut finished_to = start;
        let deadline = Instant::now() + PASS_BUDGET;
        let mut resume_after = None;
        'pages: loop {
            let batch = outbound.due_messages(now, after)?;
            let full = batch.rows.len() + batch.rejected.len() >= MAX_BATCH;
            for rej in &batch.rejected {
                // A row the sandbox wrote that does not decode: recorded once, never acted on.
                if let Some(raw) = rej.raw_id.as_deref().and_then(|s| MessageId::new(s).ok()) {
                    if inbound.delivery(&raw)?.is_none() {
                        inbound.mark_dead_letter(
                            &raw,
                            0,
                            &format!("invalid row: {}", rej.reason),
                        )?;
                        report.dead_lettered += 1;
                    }
                }
            }
            let last_seq = batch.rows.last().map(|m| m.seq);
            for msg in batch.rows {
                // Other sessions wait while this one delivers (sends are paced per
                // destination): a long backlog is taken in slices.
                if Instant::now() >= deadline {
                    resume_after = Some(after);
                    break 'pages;
                }
                // Seqs the sandbox mints are consecutive odd numbers; the cursor moves
                // only along an unbroken run of finished rows, so a row not yet due (or a
                // gap a hostile agent made) holds it back, never skips it.
                let next_in_run = from_cursor
                    && (msg.seq == finished_to + 2 || (finished_to == 0 && msg.seq == 1));
                let finished = self.deliver_row(sid, &session, &msg, &mut inbound, &mut report)?;
                if finished && next_in_run {
                    finished_to = msg.seq;
                }
                after = msg.seq;
            }
            match last_seq {
                Some(seq) if full && seq >= after => after = seq,
                Some(_) | None if full => {
                    tracing::warn!(session = %sid, "a full page of outbound rows that do not decode; later rows wait for the next pass");
                    break;
                }
                _ => break,
            }
        }
        let mut cursors = self.cursor_lock();
        let c = cursors.entry(sid.clone()).or_default();
        c.outbound_seq = c.outbound_seq.max(finished_to);
        c.resume_after = resume_after;
        Ok(report)
    }

    /// Handles one due outbound row; `Ok(true)` when it is finished: delivered (now or
    /// by an earlier pass) or dead-lettered.
    fn deliver_row(
        &self,
        sid: &SessionId,
        session: &Session,
        msg: &MessageOut,
        inbound: &mut EncryptedInboundWriter,
        report: &mut PassReport,
    ) -> Result<bool, DeliveryError> {
        if inbound.delivery(msg.id())?.is_some() {
            return Ok(true);
        }
        if !self.retries_lock().due(msg.id()) {
            report.retrying += 1;
            return Ok(false);
        }
        match self.handle(session, msg, inbound) {
            Ok(platform_id) => {
                inbound.mark_delivered(msg.id(), platform_id.as_deref())?;
                self.retries_lock().forget(msg.id());
                report.delivered += 1;
                Ok(true)
            }
            Err(failure) => {
                let (attempts, dead) = self.retries_lock().failed(msg.id(), &failure);
                if !dead {
                    report.retrying += 1;
                    return Ok(false);
                }
                tracing::warn!(session = %sid, message = %msg.id(), attempts, error = %failure, "dead-lettered");
                inbound.mark_dead_letter(msg.id(), i64::from(attempts), &failure.to_string())?;
                self.retries_lock().forget(msg.id());
                report.dead_lettered += 1;
                Ok(true)
            }
        }
    }

    fn cursor_lock(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, SessionCursor>> {
        self.cursors.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn retries_lock(&self) -> std::sync::MutexGuard<'_, RetryState> {
        self.retries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Retires inbound rows the agent completed (so its pending set shrinks) and
    /// enqueues the next occurrence of completed recurring tasks.
    fn retire_completed(
        &self,
        sid: &SessionId,
        outbound: &mut impl OutboundReader,
        inbound: &mut EncryptedInboundWriter,
    ) -> Result<usize, DeliveryError> {
        let after = self
            .cursors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(sid)
            .and_then(|c| c.acks.clone());
        let acks = outbound.processing_acks(Status::Completed, after.as_ref())?;
        let Some(last) = acks.rows.last() else {
            return Ok(0);
        };
        let cursor = last.cursor();
        let ids: Vec<MessageId> = acks.rows.iter().map(|a| a.message_id.clone()).collect();
        // Recurring tasks among them get their next occurrence before they retire, so a
        // crash between the two steps at worst enqueues it twice under the same id
        // (refused as a duplicate), never loses it.
        let scheduled = inbound_scheduled(self, sid)?;
        for task in scheduled.iter().filter(|t| ids.contains(t.id())) {
            match actions::enqueue_next_occurrence(inbound, task) {
                Ok(()) => {}
                // A row that cannot be written will never be: the series ends here,
                // loudly, instead of failing every later pass of the session (which
                // would hold back all of its replies).
                Err(e @ QueueError::Invalid { .. }) => {
                    tracing::error!(session = %sid, task = %task.id(), error = %e, "recurring task cannot be re-enqueued; its series ends")
                }
                Err(e) => return Err(e.into()),
            }
        }
        let retired = inbound.retire(&ids)?;
        self.cursors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(sid.clone())
            .or_default()
            .acks = Some(cursor);
        Ok(retired)
    }

    /// Handles one outbound row; `Ok` means finished (delivered, submitted, refused
    /// for good is an `Err` with a permanent failure).
    fn handle(
        &self,
        session: &Session,
        msg: &MessageOut,
        inbound: &mut EncryptedInboundWriter,
    ) -> Result<Option<String>, Failure> {
        if msg.message.kind == MessageKind::System {
            return actions::handle(self, session, msg, inbound);
        }
        if msg.message.route.channel_type.as_deref() == Some(a2a::AGENT_CHANNEL) {
            return self.a2a.send(self, session, msg).map(|()| None);
        }
        let to = self.address(session, msg)?;
        self.dispatcher.send(&to, &msg.message.content, msg.id())
    }

    /// The destination of a chat row, after the permission check: the session's own
    /// conversation, or a destination granted to its agent group.
    fn address(&self, session: &Session, msg: &MessageOut) -> Result<Address, Failure> {
        let mg = self
            .registry
            .messaging_group(&session.messaging_group_id)
            .map_err(|e| Failure::retryable(format!("registry: {e}")))?
            .ok_or_else(|| Failure::permanent("the session's messaging group is gone"))?;
        let route = &msg.message.route;
        let channel = route
            .channel_type
            .clone()
            .unwrap_or_else(|| mg.channel_type.clone());
        let platform = route
            .platform_id
            .clone()
            .unwrap_or_else(|| mg.platform_id.clone());
        let own = channel == mg.channel_type && platform == mg.platform_id;
        if !own {
            let allowed = self
                .registry
                .is_allowed_destination(&session.agent_group_id, &channel, &platform)
                .map_err(|e| Failure::retryable(format!("registry: {e}")))?;
            if !allowed {
                return Err(Failure::permanent(format!(
                    "destination {channel}:{platform} is not granted to agent group {}",
                    session.agent_group_id
                )));
            }
        }
        Ok(Address {
            channel_type: channel,
            instance: own.then(|| mg.instance.clone()),
            platform_id: platform,
            thread_id: route.thread_id.clone().or_else(|| {
                if own {
                    session.thread_id.clone()
                } else {
                    None
                }
            }),
        })
    }

    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    pub(crate) fn gateway(&self) -> &Gateway {
        &self.gateway
    }

    pub(crate) fn manager(&self) -> &SessionManager {
        &self.manager
    }

    pub(crate) fn dispatcher(&self) -> &dyn Dispatcher {
        self.dispatcher.as_ref()
    }
}

fn inbound_scheduled(
    d: &Delivery,
    sid: &SessionId,
) -> Result<Vec<ironclaw_contract::rows::MessageIn>, DeliveryError> {
    let mut r = d
        .manager
        .inbound_reader(sid)
        .map_err(|e| queue_access(sid, e))?;
    // Due scheduled rows are in `pending_messages`; future ones in `scheduled_messages`.
    let mut rows = r.pending_messages(Timestamp::now())?.rows;
    rows.extend(r.scheduled_messages()?.rows);
    rows.retain(|m| m.message.recurrence.is_some());
    Ok(rows)
}
