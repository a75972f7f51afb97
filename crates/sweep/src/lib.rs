//! `ironclaw-sweep`: keeping sessions alive, and no more alive than they should be
//! (DESIGN §8).
//!
//! Every tick:
//! - **Liveness.** Each session the manager launched is asked of its runtime; one that
//!   is not running has died. One that runs but whose heartbeat file is older than
//!   [`SweepConfig::heartbeat_stale`] is stuck (the agent replaces it every poll and
//!   every poll interval during a model call) and is stopped. Either way the session is
//!   relaunched after a backoff of 1 s doubling to 5 min; after
//!   [`SweepConfig::park_after`] consecutive failures it is **parked**: registry status
//!   `parked`, an audit record, no more launches until an operator resumes it. A
//!   session that stayed healthy for [`SweepConfig::healthy_after`] starts over at
//!   zero failures.
//! - **Due scheduled messages.** A session that is not running but has due messages
//!   in its inbound queue (a scheduled task came due, or a message arrived while it was
//!   down) is launched.
//!
//! Not here: deciding what a message means (router), delivering replies (delivery),
//! or budget parking (the model proxy parks; the sweep only respects it).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ironclaw_audit::{AuditEvent, AuditLog};
use ironclaw_contract::ids::SessionId;
use ironclaw_contract::queue::InboundReader;
use ironclaw_contract::time::Timestamp;
use ironclaw_registry::{Registry, SessionStatus};
use ironclaw_session::{LaunchOutcome, Liveness, SessionManager};
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct SweepConfig {
    pub interval: Duration,
    pub heartbeat_stale: Duration,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub park_after: u32,
    pub healthy_after: Duration,
}

impl Default for SweepConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(2),
            heartbeat_stale: Duration::from_secs(60),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            park_after: 5,
            healthy_after: Duration::from_secs(60),
        }
    }
}

impl SweepConfig {
    /// The wait before the `failures`-th relaunch (1-based): base·2^(n-1), capped.
    pub fn backoff(&self, failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(31);
        self.backoff_base
            .checked_mul(1u32 << exp)
            .unwrap_or(self.backoff_max)
            .min(self.backoff_max)
    }
}

/// What the sweep did to a session in one tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SweepAction {
    /// The agent was found dead (or stuck and stopped); a relaunch is due at `after`.
    Died {
        session: SessionId,
        failures: u32,
        stuck: bool,
        retry_in: Duration,
    },
    Relaunched {
        session: SessionId,
    },
    Parked {
        session: SessionId,
        failures: u32,
    },
    /// Launched because its inbound had due messages.
    Woken {
        session: SessionId,
    },
    Failed {
        session: SessionId,
        error: String,
    },
}

#[derive(Debug, Clone, Copy)]
struct Health {
    failures: u32,
    relaunch_at: Option<Instant>,
    healthy_since: Option<Instant>,
}

pub struct Sweep {
    manager: Arc<SessionManager>,
    registry: Arc<Registry>,
    audit: Arc<AuditLog>,
    config: SweepConfig,
    health: HashMap<SessionId, Health>,
}

impl Sweep {
    pub fn new(
        manager: Arc<SessionManager>,
        registry: Arc<Registry>,
        audit: Arc<AuditLog>,
        config: SweepConfig,
    ) -> Self {
        Self {
            manager,
            registry,
            audit,
            config,
            health: HashMap::new(),
        }
    }

    /// Forgets a session's failure count (an operator resumed it).
    pub fn reset(&mut self, session: &SessionId) {
        self.health.remove(session);
    }

    /// Consecutive failures recorded for a session.
    pub fn failures(&self, session: &SessionId) -> u32 {
        self.health.get(session).map_or(0, |h| h.failures)
    }

    /// Runs ticks every [`SweepConfig::interval`] until the task is dropped.
    pub async fn run(mut self) {
        let mut ticker = tokio::time::interval(self.config.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            for action in self.tick().await {
                match &action {
                    SweepAction::Failed { session, error } => {
                        tracing::warn!(session = %session, error = %error, "sweep")
                    }
                    other => tracing::info!(action = ?other, "sweep"),
                }
            }
        }
    }

    fn heartbeat_age(&self, session: &SessionId) -> Option<Duration> {
        let modified = std::fs::metadata(self.manager.heartbeat_file(session))
            .and_then(|m| m.modified())
            .ok()?;
        SystemTime::now().duration_since(modified).ok()
    }

    /// One pass over every session.
    pub async fn tick(&mut self) -> Vec<SweepAction> {
        let mut actions = Vec::new();
        let now = Instant::now();
        let live = self.manager.live().await;
        for l in &live {
            let sid = &l.session;
            let liveness = match self.manager.liveness(sid).await {
                Ok(v) => v,
                Err(e) => {
                    actions.push(SweepAction::Failed {
                        session: sid.clone(),
                        error: e.to_string(),
                    });
                    continue;
                }
            };
            let heartbeat_age = self.heartbeat_age(sid);
            let health = self.health.entry(sid.clone()).or_insert(Health {
                failures: 0,
                relaunch_at: None,
                healthy_since: Some(now),
            });
            if health.relaunch_at.is_some() {
                continue;
            }
            // A fresh launch gets one staleness period before its heartbeat counts.
            let started = health.healthy_since.unwrap_or(now);
            let stuck = liveness == Liveness::Running
                && now.duration_since(started) > self.config.heartbeat_stale
                && heartbeat_age.is_none_or(|age| age > self.config.heartbeat_stale);
            if liveness == Liveness::Running && !stuck {
                if health
                    .healthy_since
                    .is_some_and(|t| now.duration_since(t) >= self.config.healthy_after)
                {
                    health.failures = 0;
                }
                continue;
            }
            health.failures += 1;
            health.healthy_since = None;
            let failures = health.failures;
            if let Some(out) = self.manager.last_output(sid) {
                tracing::warn!(session = %sid, stuck, last_output = %out.trim(), "agent stopped serving");
            }
            if stuck {
                if let Err(e) = self.manager.stop(sid, "stuck: stale heartbeat").await {
                    actions.push(SweepAction::Failed {
                        session: sid.clone(),
                        error: e.to_string(),
                    });
                }
            }
            if failures >= self.config.park_after {
                actions.push(self.park(sid, failures).await);
                continue;
            }
            let retry_in = self.config.backoff(failures);
            if let Some(h) = self.health.get_mut(sid) {
                h.relaunch_at = Some(now + retry_in);
            }
            actions.push(SweepAction::Died {
                session: sid.clone(),
                failures,
                stuck,
                retry_in,
            });
        }

        // Relaunches that are due.
        let due: Vec<SessionId> = self
            .health
            .iter()
            .filter(|(_, h)| h.relaunch_at.is_some_and(|t| t <= now))
            .map(|(s, _)| s.clone())
            .collect();
        for sid in due {
            match self.manager.ensure_running(&sid).await {
                Ok(_) => {
                    if let Some(h) = self.health.get_mut(&sid) {
                        h.relaunch_at = None;
                        h.healthy_since = Some(Instant::now());
                    }
                    actions.push(SweepAction::Relaunched { session: sid });
                }
                Err(e) => {
                    let failures = self.health.get(&sid).map_or(1, |h| h.failures + 1);
                    if failures >= self.config.park_after {
                        actions.push(self.park(&sid, failures).await);
                    } else if let Some(h) = self.health.get_mut(&sid) {
                        h.failures = failures;
                        h.relaunch_at = Some(Instant::now() + self.config.backoff(failures));
                        actions.push(SweepAction::Failed {
                            session: sid.clone(),
                            error: e.to_string(),
                        });
                    }
                }
            }
        }

        actions.extend(self.wake_due(&live).await);
        actions
    }

    async fn park(&mut self, sid: &SessionId, failures: u32) -> SweepAction {
        self.health.remove(sid);
        let _ = self.manager.stop(sid, "parked by the sweep").await;
        if let Err(e) = self.registry.set_session_status(sid, SessionStatus::Parked) {
            return SweepAction::Failed {
                session: sid.clone(),
                error: e.to_string(),
            };
        }
        let _ = self.audit.append(AuditEvent::SessionParked {
            session_id: sid.clone(),
            reason: format!("the agent failed {failures} times in a row"),
        });
        SweepAction::Parked {
            session: sid.clone(),
            failures,
        }
    }

    /// Launches sessions that are down but have due inbound messages.
    async fn wake_due(&mut self, live: &[ironclaw_session::LiveSession]) -> Vec<SweepAction> {
        let mut actions = Vec::new();
        let sessions = match self.registry.sessions() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "sweep: reading sessions failed");
                return actions;
            }
        };
        for s in sessions {
            if s.status == SessionStatus::Parked
                || live.iter().any(|l| l.session == s.id)
                || self.health.contains_key(&s.id) && self.health[&s.id].relaunch_at.is_some()
            {
                continue;
            }
            if !self.manager.layout().inbound_db(&s.id).exists() {
                continue;
            }
            let due = self
                .manager
                .inbound_reader(&s.id)
                .ok()
                .and_then(|mut r| r.pending_messages(Timestamp::now()).ok())
                .is_some_and(|b| !b.rows.is_empty());
            if !due {
                continue;
            }
            match self.manager.ensure_running(&s.id).await {
                Ok(LaunchOutcome::Launched(_)) => {
                    self.health.insert(
                        s.id.clone(),
                        Health {
                            failures: 0,
                            relaunch_at: None,
                            healthy_since: Some(Instant::now()),
                        },
                    );
                    actions.push(SweepAction::Woken { session: s.id })
                }
                Ok(LaunchOutcome::AlreadyRunning) => {}
                Err(e) => {
                    // Counted like a death: retried with backoff, parked after the limit,
                    // instead of a failed launch every tick.
                    let failures = self.health.get(&s.id).map_or(0, |h| h.failures) + 1;
                    if failures >= self.config.park_after {
                        actions.push(self.park(&s.id, failures).await);
                        continue;
                    }
                    self.health.insert(
                        s.id.clone(),
                        Health {
                            failures,
                            relaunch_at: Some(Instant::now() + self.config.backoff(failures)),
                            healthy_since: None,
                        },
                    );
                    actions.push(SweepAction::Failed {
                        session: s.id,
                        error: e.to_string(),
                    })
                }
            }
        }
        actions
    }
}
