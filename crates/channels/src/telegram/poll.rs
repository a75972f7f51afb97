//! Telegram long polling (`telegram.mode = "poll"`): `getUpdates` batches go through
//! the same ingest service as `POST /hooks/telegram` — each event is routed to the
//! sessions' encrypted inbound queues, and the sessions it engaged are launched and
//! rung.
//!
//! - **Nothing lost.** A batch is acknowledged (the offset moves) only after every
//!   event in it is queued; a batch whose routing failed is fetched again after a
//!   back-off. The offset is not persisted: Telegram keeps every update until a
//!   `getUpdates` with a higher offset confirms it, so after a restart (or a crash)
//!   the first call, without an offset, returns exactly what was never confirmed. At a
//!   clean stop the last acknowledged batch is confirmed at once
//!   ([`TelegramPoller::confirm`]); the docs of [the parent module](super) explain why a
//!   stored offset would be unsafe.
//! - **At least once.** A crash between queueing a batch and the next call, or a
//!   batch that failed half-way, brings events again, with the same platform message
//!   id (`<chat>:<message id>`): the router's deduplication on that id is what keeps a
//!   repeat from reaching the agent twice.
//! - **Errors back off** from 1 s to 60 s (Telegram's `retry_after` wins when it sends
//!   one). A 409 (a webhook is set, or another process polls the same bot) and a 401 or
//!   404 (a revoked or wrong token) need an operator and are logged as errors.
//! - An event the router refuses as invalid is skipped with a warning
//!   ([`OnInvalid::Skip`]): retrying it can never succeed, and holding its batch back
//!   would make the bot deaf for good.
//! - **One stuck update does not block the rest.** A routing failure that lasts (a
//!   session whose key is missing, a wiring whose registry row cannot be read) makes
//!   every refetch fail at the same update. After [`STUCK_ATTEMPTS`] failures of the
//!   same update in a row (about 15 s of back-off), it is given up: logged as an
//!   error naming the update, its chat message and the cause, and acknowledged (the
//!   offset moves past it), so the updates after it flow again. That message is lost
//!   for the wirings that had not queued it — the price of not going deaf; a
//!   failure that is not about one update (the whole registry down) skips one update
//!   per [`STUCK_ATTEMPTS`] tries, each one logged.
//! - **Its own thread**, not a tokio blocking task: a long poll blocks for up to
//!   [`POLL_TIMEOUT`] + 10 s and cannot be interrupted, and the runtime waits for its
//!   blocking tasks when it shuts down. [`TelegramPolling::stop`] waits only while a
//!   batch is being routed or confirmed; an idle long poll is left behind (the process
//!   exits under it; its request already carried every acknowledged offset).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::Duration;

use ironclaw_ingest::{Ingest, OnInvalid, RouteFailure};
use tokio::sync::oneshot;

use super::{PollBatch, PollError, TelegramPoller};
use crate::{Channels, ConfigError};

/// How long each `getUpdates` waits for updates (Telegram allows up to 50 s).
pub const POLL_TIMEOUT: Duration = Duration::from_secs(25);
/// First wait after a failure; doubled per consecutive failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Longest `retry_after` obeyed: a bigger value (a bug, or a long flood ban) must not
/// keep the bot deaf for a day without anyone noticing; the next call asks again.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(15 * 60);
/// How long [`TelegramPolling::stop`] waits for a batch being routed or confirmed.
pub const STOP_WAIT: Duration = Duration::from_secs(5);
/// Routing attempts of one update, failing in a row, before it is skipped so that the
/// updates after it are routed (the back-off between them: 1 + 2 + 4 + 8 s).
pub const STUCK_ATTEMPTS: u32 = 5;

/// Why polling could not start.
#[derive(Debug)]
pub enum StartError {
    Config(ConfigError),
    Spawn(std::io::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Config(e) => write!(f, "telegram long polling: {e}"),
            StartError::Spawn(e) => {
                write!(f, "telegram long polling: cannot start its thread: {e}")
            }
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Config(e) => Some(e),
            StartError::Spawn(e) => Some(e),
        }
    }
}

/// The running poller.
pub struct TelegramPolling {
    /// Dropped to stop: the thread sees `Disconnected` at once, even mid-back-off.
    stop: mpsc::Sender<()>,
    /// True while a fetched batch is being routed, or the final confirmation is sent:
    /// the only times stopping must wait.
    busy: Arc<AtomicBool>,
    done: oneshot::Receiver<()>,
}

/// Starts polling when the configuration asks for it (`None` otherwise): each batch
/// goes to `ingest`, from the poller's own thread.
pub fn start(channels: &Channels, ingest: Ingest) -> Result<Option<TelegramPolling>, StartError> {
    let Some(poller) = channels.telegram_poller(POLL_TIMEOUT) else {
        return Ok(None);
    };
    let poller = poller.map_err(StartError::Config)?;
    let (stop, stop_rx) = mpsc::channel();
    let (done_tx, done) = oneshot::channel();
    let busy = Arc::new(AtomicBool::new(false));
    let worker = Worker {
        poller,
        ingest,
        stop: stop_rx,
        busy: busy.clone(),
    };
    std::thread::Builder::new()
        .name("telegram-poll".into())
        .spawn(move || {
            worker.run();
            let _ = done_tx.send(());
        })
        .map_err(StartError::Spawn)?;
    tracing::info!(
        timeout_secs = POLL_TIMEOUT.as_secs(),
        "telegram: long polling started"
    );
    Ok(Some(TelegramPolling { stop, busy, done }))
}

impl TelegramPolling {
    /// Stops polling: a batch being routed is finished and confirmed to Telegram
    /// (waiting at most [`STOP_WAIT`]); a batch arriving after this is not routed, so
    /// Telegram keeps it for the next start.
    pub async fn stop(self) {
        drop(self.stop);
        if self.busy.load(Ordering::SeqCst)
            && tokio::time::timeout(STOP_WAIT, self.done).await.is_err()
        {
            tracing::warn!("telegram: the poller did not finish its batch in time; Telegram will send it again after the restart");
        }
        tracing::info!("telegram: long polling stopped");
    }
}

struct Worker {
    poller: TelegramPoller,
    ingest: Ingest,
    stop: mpsc::Receiver<()>,
    busy: Arc<AtomicBool>,
}

impl Worker {
    fn stopped(&self) -> bool {
        matches!(self.stop.try_recv(), Err(TryRecvError::Disconnected))
    }

    /// Sleeps `d`, or less when stopped; true when stopped.
    fn sleep(&self, d: Duration) -> bool {
        self.busy.store(false, Ordering::SeqCst);
        !matches!(self.stop.recv_timeout(d), Err(RecvTimeoutError::Timeout))
    }

    fn run(mut self) {
        let mut backoff = MIN_BACKOFF;
        // The offset of the last getUpdates Telegram answered: what it has confirmed.
        let mut confirmed: Option<i64> = None;
        let mut stuck = Stuck::default();
        loop {
            if self.stopped() {
                break;
            }
            self.busy.store(false, Ordering::SeqCst);
            let sent = self.poller.offset();
            let result = self.poller.poll_once();
            self.busy.store(true, Ordering::SeqCst);
            if self.stopped() {
                // Not routed, not acknowledged: Telegram keeps it for the next start.
                break;
            }
            let batch = match result {
                Ok(batch) => {
                    confirmed = sent;
                    batch
                }
                Err(e) => {
                    let wait = failure_wait(&e, &mut backoff);
                    log_poll_error(&e, wait);
                    if self.sleep(wait) {
                        break;
                    }
                    continue;
                }
            };
            if batch.next_offset.is_none() {
                backoff = MIN_BACKOFF;
                continue;
            }
            log_skipped(&batch);
            match route_polled(&self.ingest, &batch, &mut stuck) {
                AfterRouting::Queued => {
                    self.poller.acknowledge(&batch);
                    backoff = MIN_BACKOFF;
                }
                AfterRouting::Skip {
                    update_id,
                    platform_message,
                    error,
                } => {
                    tracing::error!(
                        update_id,
                        message = platform_message.as_deref().unwrap_or("-"),
                        attempts = STUCK_ATTEMPTS,
                        error = %error,
                        "telegram: a polled update could not be queued, again and again; skipped (not delivered to the wirings that had not queued it) so that later updates flow"
                    );
                    self.poller.acknowledge(&PollBatch {
                        next_offset: update_id.checked_add(1),
                        ..PollBatch::default()
                    });
                    backoff = MIN_BACKOFF;
                }
                AfterRouting::Retry(e) => {
                    let wait = next_backoff(&mut backoff);
                    tracing::error!(error = %e, retry_in_secs = wait.as_secs(), "telegram: queuing a polled batch failed; it will be fetched again");
                    if self.sleep(wait) {
                        break;
                    }
                }
            }
        }
        // Stopping with an acknowledged batch Telegram has not heard of: tell it now,
        // or the next start receives the batch again.
        self.busy.store(true, Ordering::SeqCst);
        if self.poller.offset() != confirmed {
            if let Err(e) = self.poller.confirm() {
                tracing::warn!(error = %e, "telegram: confirming the last batch failed; Telegram will send it again after the restart");
            }
        }
        self.busy.store(false, Ordering::SeqCst);
    }
}

/// Consecutive routing failures of one update.
#[derive(Debug, Default)]
struct Stuck {
    update_id: Option<i64>,
    failures: u32,
}

impl Stuck {
    /// Counts a failure of `update_id` (a failure of another update starts over); true
    /// once it has failed [`STUCK_ATTEMPTS`] times in a row.
    fn failed(&mut self, update_id: i64) -> bool {
        if self.update_id != Some(update_id) {
            self.update_id = Some(update_id);
            self.failures = 0;
        }
        self.failures += 1;
        self.failures >= STUCK_ATTEMPTS
    }
}

/// What to do with a polled batch once it went through the ingest service.
#[derive(Debug)]
enum AfterRouting {
    /// Every event is queued (or refused as invalid): acknowledge the batch.
    Queued,
    /// Fetch the batch again after a back-off.
    Retry(RouteFailure),
    /// `update_id` failed [`STUCK_ATTEMPTS`] times in a row: acknowledge up to and
    /// including it (the events before it are queued), and fetch what follows.
    Skip {
        update_id: i64,
        platform_message: Option<String>,
        error: RouteFailure,
    },
}

/// Hands a polled batch to the ingest service (which wakes the sessions it engaged)
/// and decides, counting in `stuck`, whether a failure is retried or its update given
/// up. On a failure the events from the failed one on are not queued; the ones before
/// it are remembered by the router and dropped as duplicates when the batch comes
/// again.
fn route_polled(ingest: &Ingest, batch: &PollBatch, stuck: &mut Stuck) -> AfterRouting {
    let received = ingest.receive(&batch.events, OnInvalid::Skip);
    match received.stopped {
        None => {
            *stuck = Stuck::default();
            AfterRouting::Queued
        }
        Some(stopped) => match batch.event_updates.get(stopped.index) {
            Some(&update_id) if stuck.failed(update_id) => {
                *stuck = Stuck::default();
                AfterRouting::Skip {
                    update_id,
                    platform_message: batch
                        .events
                        .get(stopped.index)
                        .and_then(|e| e.platform_message_id.clone()),
                    error: stopped.error,
                }
            }
            _ => AfterRouting::Retry(stopped.error),
        },
    }
}

fn next_backoff(backoff: &mut Duration) -> Duration {
    let wait = *backoff;
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
    wait
}

/// Telegram's `retry_after` when it sent one, else the next back-off step.
fn failure_wait(e: &PollError, backoff: &mut Duration) -> Duration {
    let step = next_backoff(backoff);
    match e {
        PollError::Refused {
            retry_after: Some(r),
            ..
        } => (*r).clamp(MIN_BACKOFF, MAX_RETRY_AFTER),
        _ => step,
    }
}

fn log_poll_error(e: &PollError, wait: Duration) {
    let retry_in_secs = wait.as_secs();
    match e {
        PollError::Refused { code: 409, .. } => {
            tracing::error!(error = %e, retry_in_secs, "telegram: getUpdates conflicts with a webhook or another poller of this bot (deleteWebhook, or stop the other process)")
        }
        PollError::Refused {
            code: 401 | 404, ..
        } => tracing::error!(error = %e, retry_in_secs, "telegram: the bot token was refused"),
        _ => tracing::warn!(error = %e, retry_in_secs, "telegram: getUpdates failed"),
    }
}

fn log_skipped(batch: &PollBatch) {
    for (update_id, e) in &batch.rejected {
        tracing::warn!(update_id, error = %e, "telegram: unreadable update skipped");
    }
    for why in &batch.ignored {
        tracing::debug!(reason = ?why, "telegram: update ignored");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::collections::HashSet;
    use std::sync::Mutex;

    use ironclaw_contract::enums::Provenance;
    use ironclaw_contract::ids::{MessagingGroupId, SessionId};
    use ironclaw_ingest::{InboundEvent, RouteInbound, RouteReport, SinkError, Wake};

    /// Routes like the router over wired, public chats: every event is queued once (a
    /// platform message id queued before is a duplicate, as the router's dedup makes
    /// it), except one whose text contains "poison" (a session whose queue can never be
    /// written, say), which stops routing as a sink failure does.
    #[derive(Default)]
    struct PoisonRouter {
        rows: Mutex<Vec<String>>,
        seen: Mutex<HashSet<String>>,
    }

    impl RouteInbound for PoisonRouter {
        fn route(&self, event: &InboundEvent) -> Result<RouteReport, RouteFailure> {
            let mg = MessagingGroupId::new(format!("mg-{}", event.platform_id)).unwrap();
            let mut report = RouteReport::new(mg);
            if event.text.contains("poison") {
                return Err(RouteFailure::Stopped {
                    partial: Box::new(report),
                    error: Box::new(SinkError::new(
                        "unseal the session key",
                        std::io::Error::other("key missing"),
                    )),
                });
            }
            let id = event.platform_message_id.clone().unwrap_or_default();
            if !self.seen.lock().unwrap().insert(id) {
                report.duplicate = true;
                return Ok(report);
            }
            self.rows.lock().unwrap().push(event.text.clone());
            Ok(report)
        }
    }

    struct NoWake;

    impl Wake for NoWake {
        fn wake(&self, _: &SessionId) {}
    }

    fn ingest(router: &Arc<PoisonRouter>) -> Ingest {
        Ingest::new(router.clone(), Arc::new(NoWake))
    }

    fn event(chat: &str, message: i64, text: &str) -> InboundEvent {
        InboundEvent {
            channel_type: "telegram".into(),
            platform_id: chat.into(),
            instance: None,
            thread_id: None,
            sender_handle: "7".into(),
            text: text.into(),
            mentioned: true,
            provenance: Provenance::Verified,
            platform_message_id: Some(format!("{chat}:{message}")),
        }
    }

    fn batch(events: Vec<(i64, InboundEvent)>) -> PollBatch {
        let next_offset = events.iter().map(|(u, _)| u + 1).max();
        let (event_updates, events) = events.into_iter().unzip();
        PollBatch {
            events,
            event_updates,
            next_offset,
            ..PollBatch::default()
        }
    }

    /// A lasting failure of one update (a sink error for its session) is retried
    /// [`STUCK_ATTEMPTS`] times, then given up and acknowledged past, so the updates
    /// after it are routed; before, every refetch failed at it and the bot went deaf.
    #[test]
    fn an_update_that_keeps_failing_is_skipped_and_later_ones_flow() {
        let router = Arc::new(PoisonRouter::default());
        let ingest = ingest(&router);
        let first = batch(vec![
            (10, event("1", 100, "hello")),
            (11, event("1", 101, "poison")),
            (12, event("2", 200, "after")),
        ]);
        let mut stuck = Stuck::default();
        for attempt in 1..STUCK_ATTEMPTS {
            let after = route_polled(&ingest, &first, &mut stuck);
            assert!(
                matches!(after, AfterRouting::Retry(RouteFailure::Stopped { .. })),
                "attempt {attempt}: {after:?}"
            );
        }
        let after = route_polled(&ingest, &first, &mut stuck);
        let AfterRouting::Skip {
            update_id,
            platform_message,
            error,
        } = after
        else {
            panic!("not skipped after {STUCK_ATTEMPTS} attempts: {after:?}");
        };
        assert_eq!(update_id, 11);
        assert_eq!(platform_message.as_deref(), Some("1:101"));
        assert!(error.to_string().contains("key missing"), "{error}");
        // The worker acknowledges up to and including 11: Telegram then sends 12 on.
        let after = route_polled(
            &ingest,
            &batch(vec![(12, event("2", 200, "after"))]),
            &mut stuck,
        );
        assert!(matches!(after, AfterRouting::Queued), "{after:?}");
        assert_eq!(*router.rows.lock().unwrap(), ["hello", "after"]);
    }

    /// Only failures of the same update in a row count: a failure of another update,
    /// or a batch that went through, starts the count over.
    #[test]
    fn the_failure_count_is_per_update_and_consecutive() {
        let mut stuck = Stuck::default();
        for _ in 1..STUCK_ATTEMPTS {
            assert!(!stuck.failed(5));
        }
        assert!(!stuck.failed(6));
        for _ in 2..STUCK_ATTEMPTS {
            assert!(!stuck.failed(6));
        }
        assert!(stuck.failed(6));

        let router = Arc::new(PoisonRouter::default());
        let ingest = ingest(&router);
        let mut stuck = Stuck {
            update_id: Some(1),
            failures: STUCK_ATTEMPTS - 1,
        };
        let ok = batch(vec![(1, event("2", 1, "fine"))]);
        let after = route_polled(&ingest, &ok, &mut stuck);
        assert!(matches!(after, AfterRouting::Queued), "{after:?}");
        let bad = batch(vec![(1, event("1", 2, "poison"))]);
        let after = route_polled(&ingest, &bad, &mut stuck);
        assert!(matches!(after, AfterRouting::Retry(_)), "{after:?}");
    }

    #[test]
    fn backoff_doubles_to_a_cap_and_retry_after_wins() {
        let mut b = MIN_BACKOFF;
        let steps: Vec<u64> = (0..8).map(|_| next_backoff(&mut b).as_secs()).collect();
        assert_eq!(steps, [1, 2, 4, 8, 16, 32, 60, 60]);
        let mut b = MIN_BACKOFF;
        let refused = |retry_after| PollError::Refused {
            code: 429,
            description: "Too Many Requests".into(),
            retry_after,
        };
        assert_eq!(
            failure_wait(&refused(Some(Duration::from_secs(7))), &mut b),
            Duration::from_secs(7)
        );
        assert_eq!(
            failure_wait(&refused(Some(Duration::from_secs(86_400))), &mut b),
            MAX_RETRY_AFTER
        );
        assert_eq!(
            failure_wait(&refused(Some(Duration::ZERO)), &mut b),
            MIN_BACKOFF
        );
        assert_eq!(
            failure_wait(&PollError::Transport("x".into()), &mut b),
            Duration::from_secs(8)
        );
    }
}
