//! The poll loop: what the agent does between engages.
//!
//! Each iteration touches the heartbeat, reads the due inbound messages (a fresh
//! connection per read, so the host's commits are always seen), engages the ones that
//! are not done yet, rings the host when it wrote outbound rows, and waits — until the
//! doorbell rings or the poll interval (2 s) passes.
//!
//! # Failure handling
//! - **Provider errors** (the model proxy refused or the model answered garbage) back
//!   off exponentially with equal jitter: the `n`-th consecutive failure waits a random
//!   time in `[d/2, d]` with `d = min(base·2^(n-1), max)`. From the
//!   [`Backoff::threshold`]-th failure on the circuit is open: the loop says so once
//!   and keeps waiting the capped delay between attempts; doorbell rings during a
//!   backoff do not shorten it, so a down provider is not hammered by traffic. One
//!   success closes it.
//! - **Queue errors** are retried at the poll interval, except corruption (wrong key,
//!   not our file, malformed pages): [`LoopConfig::corruption_limit`] of those in a row
//!   end the loop with [`Exit::CorruptQueue`], so the host relaunches the sandbox on
//!   a fresh mount instead of the agent spinning on a broken file.
//! - **Turn-limit overflow** is not an error: the engage answers and completes (see
//!   [`crate::engage`]).
//!
//! # Not re-engaging
//! A completed message stays visible in inbound until the host retires it. The loop
//! remembers what it completed (pruned to what is still pending, so the set stays
//! bounded) and, after a restart, asks outbound's `processing_ack` which pending ids it
//! already completed — so nothing is engaged twice across host lag or a crash.
//!
//! # Accumulation
//! Messages written with `trigger = false` (the router's "accumulate" policy) are
//! context, not requests: they wait until a triggering or scheduled message arrives
//! and then go to the model together with it.
//!
//! # Stopping
//! The loop checks the stop flag between steps and while waiting; an engage in
//! progress is finished first (its rows are written idempotently anyway).

use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ironclaw_contract::ids::MessageId;
use ironclaw_contract::queue::{InboundReader, OutboundWriter, QueueError};
use ironclaw_contract::rows::MessageIn;
use ironclaw_contract::time::Timestamp;

use crate::engage::{Agent, EngageError, EngageReport};
use crate::provider::Provider;

/// The fallback poll interval when no doorbell rings.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(2);
/// Consecutive corrupt reads that end the loop.
pub const DEFAULT_CORRUPTION_LIMIT: u32 = 3;
/// Messages handed to one engage; the rest follow in the next iteration at once.
pub const DEFAULT_MAX_BATCH: usize = 64;
/// Longest single sleep, so a stop request is noticed promptly.
const WAIT_SLICE: Duration = Duration::from_millis(200);

/// Exponential backoff with equal jitter for provider failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
    /// Consecutive failures at which the circuit opens (at least 1).
    pub threshold: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            max: Duration::from_secs(60),
            threshold: 5,
        }
    }
}

impl Backoff {
    /// The wait after the `failures`-th consecutive failure (1-based), for a jitter in
    /// `[0, 1]`: uniform in `[d/2, d]` with `d = min(base·2^(failures-1), max)`. A `max`
    /// below `base` is raised to `base`.
    pub fn delay(&self, failures: u32, jitter: f64) -> Duration {
        let max = self.max.max(self.base);
        let exp = failures.saturating_sub(1).min(32);
        let d = self
            .base
            .checked_mul(1u32 << exp.min(31))
            .unwrap_or(max)
            .min(max);
        let half = d / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }

    pub fn is_open(&self, failures: u32) -> bool {
        failures >= self.threshold.max(1)
    }
}

/// How the loop is paced.
#[derive(Debug, Clone)]
pub struct LoopConfig {
    pub poll_interval: Duration,
    pub backoff: Backoff,
    pub corruption_limit: u32,
    pub max_batch: usize,
    /// The file touched every iteration (and every poll interval during an engage).
    pub heartbeat: Option<PathBuf>,
}

impl Default for LoopConfig {
    fn default() -> Self {
        Self {
            poll_interval: DEFAULT_POLL_INTERVAL,
            backoff: Backoff::default(),
            corruption_limit: DEFAULT_CORRUPTION_LIMIT,
            max_batch: DEFAULT_MAX_BATCH,
            heartbeat: None,
        }
    }
}

/// Wakes the agent early and lets it wake the host.
pub trait Doorbell {
    /// Waits up to `timeout`; returns true if the host rang.
    fn wait(&mut self, timeout: Duration) -> bool;
    /// Tells the host that outbound has new rows. Best effort.
    fn ring(&mut self);
}

/// No doorbell: every wait is the full timeout.
#[derive(Debug, Default)]
pub struct NoDoorbell;

impl Doorbell for NoDoorbell {
    fn wait(&mut self, timeout: Duration) -> bool {
        std::thread::sleep(timeout);
        false
    }
    fn ring(&mut self) {}
}

/// The doorbell over the session's host unix socket.
///
/// The host listens; the agent keeps one connection. A byte from the host means
/// "inbound has something new"; a byte from the agent means "outbound has something
/// new". No data crosses it. When the socket is absent or the connection drops, the
/// agent falls back to polling and reconnects at most once per poll interval.
#[derive(Debug)]
pub struct SocketDoorbell {
    path: PathBuf,
    stream: Option<UnixStream>,
    next_connect: Instant,
    retry_every: Duration,
    warned: bool,
}

impl SocketDoorbell {
    pub fn new(path: impl Into<PathBuf>, retry_every: Duration) -> Self {
        Self {
            path: path.into(),
            stream: None,
            next_connect: Instant::now(),
            retry_every,
            warned: false,
        }
    }

    /// Whether a connection to the host is currently up.
    pub fn connected(&self) -> bool {
        self.stream.is_some()
    }

    fn connect(&mut self) {
        if self.stream.is_some() || Instant::now() < self.next_connect {
            return;
        }
        self.next_connect = Instant::now() + self.retry_every;
        match UnixStream::connect(&self.path) {
            Ok(s) => {
                self.stream = Some(s);
                self.warned = false;
            }
            Err(e) => {
                if !self.warned {
                    eprintln!(
                        "ironclaw-sandbox: doorbell {} unavailable ({e}); polling every {:?}",
                        self.path.display(),
                        self.retry_every
                    );
                    self.warned = true;
                }
            }
        }
    }
}

impl Doorbell for SocketDoorbell {
    fn wait(&mut self, timeout: Duration) -> bool {
        self.connect();
        let Some(stream) = self.stream.as_mut() else {
            std::thread::sleep(timeout);
            return false;
        };
        if stream
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
            .is_err()
        {
            self.stream = None;
            std::thread::sleep(timeout);
            return false;
        }
        // Several rings coalesce into one wake: whatever is buffered is one signal.
        let mut buf = [0u8; 64];
        match stream.read(&mut buf) {
            Ok(0) => {
                self.stream = None;
                false
            }
            Ok(_) => true,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                false
            }
            Err(_) => {
                self.stream = None;
                false
            }
        }
    }

    fn ring(&mut self) {
        self.connect();
        if let Some(stream) = self.stream.as_mut() {
            let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
            if stream.write_all(b"!").is_err() {
                self.stream = None;
            }
        }
    }
}

/// Writes the heartbeat file: the current time, replaced atomically so the host never
/// reads half a timestamp.
pub fn touch_heartbeat(path: &Path) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{}\n", Timestamp::now()))?;
    std::fs::rename(&tmp, path)
}

/// Why the loop ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// The stop flag was set.
    Stopped,
    /// Too many consecutive corrupt reads or writes.
    CorruptQueue { streak: u32, last: String },
}

/// What one iteration did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing due.
    Idle,
    /// Only non-triggering messages are pending; they wait for a trigger.
    Accumulating { pending: usize },
    /// An engage finished. `more` is true when due messages were left for the next
    /// iteration.
    Engaged { report: EngageReport, more: bool },
    /// The provider failed; retry after `wait`.
    ProviderFailed {
        failures: u32,
        wait: Duration,
        error: String,
    },
    /// A queue read or write failed; retry at the poll interval.
    QueueFailed { error: String },
    /// The corruption streak reached the limit.
    Fatal(Exit),
}

/// The loop's inputs and its memory.
pub struct PollLoop<P, I, O, D> {
    pub agent: Agent<P>,
    pub inbound: I,
    pub outbound: O,
    pub doorbell: D,
    pub config: LoopConfig,
    done: HashSet<MessageId>,
    reported_rejects: HashSet<i64>,
    provider_failures: u32,
    corruption_streak: u32,
    rng: u64,
}

impl<P, I, O, D> PollLoop<P, I, O, D>
where
    P: Provider,
    I: InboundReader,
    O: OutboundWriter,
    D: Doorbell,
{
    pub fn new(agent: Agent<P>, inbound: I, outbound: O, doorbell: D, config: LoopConfig) -> Self {
        // Jitter only needs to differ between sandboxes, not be unpredictable.
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        Self {
            agent,
            inbound,
            outbound,
            doorbell,
            config,
            done: HashSet::new(),
            reported_rejects: HashSet::new(),
            provider_failures: 0,
            corruption_streak: 0,
            rng: seed | 1,
        }
    }

    /// Runs until `stop` is set or the queue is corrupt.
    pub fn run(&mut self, stop: &AtomicBool) -> Exit {
        while !stop.load(Ordering::Relaxed) {
            let wait = match self.step() {
                Step::Fatal(exit) => return exit,
                Step::Engaged { more: true, .. } => continue,
                Step::Engaged { .. } | Step::Idle | Step::Accumulating { .. } => {
                    self.wait(self.config.poll_interval, stop, true);
                    continue;
                }
                Step::QueueFailed { error } => {
                    eprintln!("ironclaw-sandbox: queue: {error}");
                    self.config.poll_interval
                }
                Step::ProviderFailed {
                    failures,
                    wait,
                    error,
                } => {
                    eprintln!(
                        "ironclaw-sandbox: provider error (attempt {failures}): {error}; retrying in {} ms",
                        wait.as_millis()
                    );
                    if self.config.backoff.is_open(failures)
                        && !self.config.backoff.is_open(failures - 1)
                    {
                        eprintln!(
                            "ironclaw-sandbox: model provider unavailable after {failures} consecutive failures; circuit open, backing off up to {} s",
                            self.config.backoff.max.as_secs()
                        );
                    }
                    wait
                }
            };
            // Failures wait their full delay: a ring does not shorten a backoff.
            self.wait(wait, stop, false);
        }
        Exit::Stopped
    }

    /// Waits up to `total`, touching the heartbeat every poll interval and returning
    /// early on a stop request, or on a ring when `wake_on_ring`.
    fn wait(&mut self, total: Duration, stop: &AtomicBool, wake_on_ring: bool) {
        let deadline = Instant::now() + total;
        let mut next_beat = Instant::now() + self.config.poll_interval;
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            if now >= next_beat {
                self.heartbeat();
                next_beat = now + self.config.poll_interval;
            }
            let slice = (deadline - now).min(WAIT_SLICE);
            if self.doorbell.wait(slice) && wake_on_ring {
                return;
            }
        }
    }

    fn heartbeat(&self) {
        if let Some(path) = &self.config.heartbeat {
            if let Err(e) = touch_heartbeat(path) {
                eprintln!("ironclaw-sandbox: heartbeat {}: {e}", path.display());
            }
        }
    }

    fn jitter(&mut self) -> f64 {
        // xorshift64
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Counts a queue failure; returns the fatal exit when the streak is long enough.
    fn queue_failure(&mut self, e: &QueueError) -> Step {
        let corrupt = matches!(e, QueueError::Db(db) if db.is_corruption());
        if corrupt {
            self.corruption_streak += 1;
            if self.corruption_streak >= self.config.corruption_limit.max(1) {
                return Step::Fatal(Exit::CorruptQueue {
                    streak: self.corruption_streak,
                    last: e.to_string(),
                });
            }
        }
        Step::QueueFailed {
            error: e.to_string(),
        }
    }

    /// One iteration: heartbeat, read, maybe engage.
    pub fn step(&mut self) -> Step {
        self.heartbeat();
        let batch = match self.inbound.pending_messages(Timestamp::now()) {
            Ok(b) => b,
            Err(e) => return self.queue_failure(&e),
        };
        self.corruption_streak = 0;
        for rej in &batch.rejected {
            if self.reported_rejects.len() > 10_000 {
                self.reported_rejects.clear();
            }
            if self.reported_rejects.insert(rej.rowid) {
                eprintln!(
                    "ironclaw-sandbox: skipping inbound row {} ({}): {}",
                    rej.rowid,
                    rej.raw_id.as_deref().unwrap_or("no id"),
                    rej.reason
                );
            }
        }
        let pending_ids: HashSet<&MessageId> = batch.rows.iter().map(MessageIn::id).collect();
        self.done.retain(|id| pending_ids.contains(id));
        let mut todo: Vec<MessageIn> = batch
            .rows
            .into_iter()
            .filter(|m| !self.done.contains(m.id()))
            .collect();
        if todo.is_empty() {
            return Step::Idle;
        }
        // After a restart (or a crash between completing and remembering), outbound
        // knows what this session already completed.
        let ids: Vec<MessageId> = todo.iter().map(|m| m.id().clone()).collect();
        match self.outbound.completed_among(&ids) {
            Ok(completed) if !completed.is_empty() => {
                let completed: HashSet<MessageId> = completed.into_iter().collect();
                todo.retain(|m| !completed.contains(m.id()));
                self.done.extend(completed);
            }
            Ok(_) => {}
            Err(e) => return self.queue_failure(&e),
        }
        if todo.is_empty() {
            return Step::Idle;
        }
        // An earlier attempt claimed a batch and did not finish it (a crash, a provider
        // failure): engage exactly that batch again. Its first id keys every row the
        // attempt may have written, so the same batch rewrites the same ids (refused as
        // already present) — while a batch grown by newer messages would keep the old
        // key, find its reply already written for the smaller batch, and complete the
        // newer messages unanswered.
        // Only while that batch can still engage: if the host has since retired its
        // triggering message (a cancelled task), its leftovers are stale claims that
        // wait, like any unclaimed message, for the next trigger — pinning them would
        // starve everything newer.
        let pending: Vec<MessageId> = todo.iter().map(|m| m.id().clone()).collect();
        match self.outbound.claimed_among(&pending) {
            Ok(claimed) if !claimed.is_empty() => {
                let claimed: HashSet<MessageId> = claimed.into_iter().collect();
                let engages =
                    |m: &MessageIn| m.message.trigger || m.message.process_after.is_some();
                if todo.iter().any(|m| claimed.contains(m.id()) && engages(m)) {
                    todo.retain(|m| claimed.contains(m.id()));
                }
            }
            Ok(_) => {}
            Err(e) => return self.queue_failure(&e),
        }
        let triggered = todo
            .iter()
            .any(|m| m.message.trigger || m.message.process_after.is_some());
        if !triggered {
            return Step::Accumulating {
                pending: todo.len(),
            };
        }
        let more = todo.len() > self.config.max_batch.max(1);
        todo.truncate(self.config.max_batch.max(1));
        match self.engage_with_keepalive(&todo) {
            Ok(report) => {
                self.provider_failures = 0;
                self.done.extend(todo.iter().map(|m| m.id().clone()));
                if report.written > 0 {
                    self.doorbell.ring();
                }
                Step::Engaged { report, more }
            }
            Err(EngageError::Provider(e)) => {
                self.provider_failures = self.provider_failures.saturating_add(1);
                let jitter = self.jitter();
                Step::ProviderFailed {
                    failures: self.provider_failures,
                    wait: self.config.backoff.delay(self.provider_failures, jitter),
                    error: e.to_string(),
                }
            }
            Err(EngageError::Queue { op, source }) => {
                let step = self.queue_failure(&source);
                match step {
                    Step::QueueFailed { error } => Step::QueueFailed {
                        error: format!("{op}: {error}"),
                    },
                    other => other,
                }
            }
        }
    }

    /// Engages while a helper thread keeps the heartbeat fresh, so a slow model call is
    /// not mistaken for a stuck agent. The call itself is bounded by the HTTP timeouts.
    fn engage_with_keepalive(&mut self, todo: &[MessageIn]) -> Result<EngageReport, EngageError> {
        let finished = AtomicBool::new(false);
        let beat = self.config.heartbeat.clone();
        let interval = self.config.poll_interval;
        let (agent, inbound, outbound) = (&mut self.agent, &mut self.inbound, &mut self.outbound);
        std::thread::scope(|s| {
            if let Some(path) = beat {
                let finished = &finished;
                s.spawn(move || {
                    let mut last = Instant::now();
                    // Short sleeps: the engage waits for this thread when it ends.
                    while !finished.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(10).min(interval));
                        if last.elapsed() >= interval {
                            let _ = touch_heartbeat(&path);
                            last = Instant::now();
                        }
                    }
                });
            }
            let result = agent.engage(todo, inbound, outbound);
            finished.store(true, Ordering::Relaxed);
            result
        })
    }

    /// Consecutive provider failures so far.
    pub fn provider_failures(&self) -> u32 {
        self.provider_failures
    }
}
