//! System actions from a sandbox, re-authorized on the host.
//!
//! Nothing an agent writes is executed because it asked. The action name decides:
//! - a change kind (`persona`, `enabled_tools`, …; what `request_capability_change`
//!   writes) → a change request by `sandbox:<session>` for the session's own agent
//!   group, held at the gateway for a human;
//! - `schedule_task` → a validated inbound row with `process_after` (prompt only; no
//!   command field exists), idempotent by the outbound id;
//! - `list_tasks` / `cancel_task` → act on this session's own inbound queue only (a
//!   task id of another session simply is not there), answered as a later inbound row;
//! - `ask_user_question` → posted to the session's own conversation; the human's answer
//!   comes back through routing as an ordinary message;
//! - `typing`, `presence`, `ack`, `noop` → nothing;
//! - anything else → refused (dead-lettered with the reason): unknown means privileged.

use ironclaw_contract::actions::{
    parse_action, ActionBody, AskUserRequest, Recurrence, ScheduleRequest, SystemAction,
    ACTION_CANCEL_TASK, ACTION_LIST_TASKS,
};
use ironclaw_contract::enums::{MessageKind, Provenance, Status};
use ironclaw_contract::ids::{MessageId, UserId};
use ironclaw_contract::queue::{InboundReader, InboundWriter, QueueError};
use ironclaw_contract::rows::{MessageIn, MessageOut, NewMessageIn, Route};
use ironclaw_contract::time::Timestamp;
use ironclaw_gateway::{GatewayError, Submission};
use ironclaw_queue::EncryptedInboundWriter;
use ironclaw_registry::Session;
use serde_json::{json, Value};

use crate::retry::Failure;
use crate::Delivery;

const NO_OPS: &[&str] = &["typing", "presence", "ack", "noop"];

/// A host-minted inbound id derived from an outbound id, so handling the same row
/// twice (a crash before it was marked) writes nothing new.
fn derived_id(prefix: &str, out: &MessageId) -> MessageId {
    let plain = format!("{prefix}-{out}");
    MessageId::new(plain.clone()).unwrap_or_else(|_| {
        // Over the id length limit: keep it unique with a digest of the whole id.
        use sha2::{Digest, Sha256};
        let h = ironclaw_contract::hex::encode(&Sha256::digest(out.as_str().as_bytes())[..16]);
        MessageId::new(format!("{prefix}-{h}")).unwrap_or_else(|_| out.clone())
    })
}

fn queue_failure(e: QueueError) -> Failure {
    match e {
        QueueError::Invalid { .. } => Failure::permanent(e.to_string()),
        other => Failure::retryable(other.to_string()),
    }
}

/// Writes a host row into the session's inbound queue; an id already present means an
/// earlier attempt wrote it.
fn write_once(inbound: &mut EncryptedInboundWriter, row: &NewMessageIn) -> Result<(), Failure> {
    match inbound.write_message(row) {
        Ok(_) | Err(QueueError::DuplicateId { .. }) => Ok(()),
        Err(e) => Err(queue_failure(e)),
    }
}

/// An answer to the agent, as a later inbound message.
fn reply_to_agent(
    inbound: &mut EncryptedInboundWriter,
    out: &MessageId,
    text: String,
) -> Result<(), Failure> {
    write_once(
        inbound,
        &NewMessageIn {
            id: derived_id("re", out),
            kind: MessageKind::System,
            timestamp: Timestamp::now(),
            process_after: None,
            recurrence: None,
            series_id: None,
            trigger: true,
            route: Route::default(),
            content: text,
            source_session_id: None,
            provenance: Provenance::Verified,
        },
    )
}

pub(crate) fn handle(
    d: &Delivery,
    session: &Session,
    msg: &MessageOut,
    inbound: &mut EncryptedInboundWriter,
) -> Result<Option<String>, Failure> {
    let body = parse_action(msg.message.content.as_bytes())
        .map_err(|e| Failure::permanent(format!("invalid system action: {e}")))?;
    match body {
        ActionBody::Schedule(req) => schedule(inbound, msg, &req).map(|()| None),
        ActionBody::AskUser(req) => ask(d, session, msg, &req),
        ActionBody::Envelope(a) => envelope(d, session, msg, inbound, &a),
    }
}

fn schedule(
    inbound: &mut EncryptedInboundWriter,
    msg: &MessageOut,
    req: &ScheduleRequest,
) -> Result<(), Failure> {
    let bad = |e: String| Failure::permanent(format!("schedule_task refused: {e}"));
    let run_at = req
        .run_at()
        .map_err(|e| bad(e.to_string()))?
        .unwrap_or_else(Timestamp::now);
    let recurrence = req.recurrence().map_err(|e| bad(e.to_string()))?;
    let prompt = req.prompt.trim();
    if prompt.is_empty() {
        return Err(bad("the prompt is blank".into()));
    }
    let id = derived_id("task", msg.id());
    write_once(
        inbound,
        &NewMessageIn {
            id: id.clone(),
            kind: MessageKind::Task,
            timestamp: Timestamp::now(),
            process_after: Some(run_at),
            recurrence: recurrence.map(|_| req.recurrence.trim().to_owned()),
            series_id: recurrence.map(|_| id.as_str().to_owned()),
            trigger: true,
            route: Route::default(),
            content: prompt.to_owned(),
            source_session_id: None,
            provenance: Provenance::Verified,
        },
    )
}

/// After a recurring task ran: the next occurrence, the first one after now (a daemon
/// that was down does not replay every missed run).
pub(crate) fn enqueue_next_occurrence(
    inbound: &mut EncryptedInboundWriter,
    task: &MessageIn,
) -> Result<(), QueueError> {
    let Some(spec) = task.message.recurrence.as_deref() else {
        return Ok(());
    };
    let Ok(rec) = Recurrence::parse(spec) else {
        // Validated when scheduled; a row that no longer parses simply stops recurring.
        return Ok(());
    };
    let step = rec.interval().as_nanos() as i128;
    let base = task
        .message
        .process_after
        .unwrap_or(task.message.timestamp)
        .unix_nanos();
    let now = Timestamp::now().unix_nanos();
    let periods = ((now - base) / step).max(0) + 1;
    let Ok(next) = Timestamp::from_unix_nanos(base + periods * step) else {
        return Ok(());
    };
    let series = task
        .message
        .series_id
        .clone()
        .unwrap_or_else(|| task.id().as_str().to_owned());
    let id = occurrence_id(&series, next)?;
    let row = NewMessageIn {
        id,
        kind: MessageKind::Task,
        timestamp: Timestamp::now(),
        process_after: Some(next),
        recurrence: task.message.recurrence.clone(),
        series_id: Some(series),
        trigger: true,
        route: task.message.route.clone(),
        content: task.message.content.clone(),
        source_session_id: None,
        provenance: Provenance::Verified,
    };
    match inbound.write_message(&row) {
        Ok(_) | Err(QueueError::DuplicateId { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The id of a series' occurrence at `at`: `<series>:<unix seconds>`, the same for the
/// same occurrence however often it is enqueued (a duplicate is refused), or, for a
/// series id too long to extend, `task-<digest of the series>:<unix seconds>`.
fn occurrence_id(series: &str, at: Timestamp) -> Result<MessageId, QueueError> {
    let secs = at.unix_nanos().div_euclid(1_000_000_000);
    MessageId::new(format!("{series}:{secs}"))
        .or_else(|_| {
            use sha2::{Digest, Sha256};
            let h = ironclaw_contract::hex::encode(&Sha256::digest(series.as_bytes())[..16]);
            MessageId::new(format!("task-{h}:{secs}"))
        })
        .map_err(|e| QueueError::Invalid {
            what: "task id",
            reason: e.to_string(),
        })
}

fn ask(
    d: &Delivery,
    session: &Session,
    msg: &MessageOut,
    req: &AskUserRequest,
) -> Result<Option<String>, Failure> {
    let mut text = format!("Question from the agent: {}", req.question.trim());
    for (i, o) in req.options.iter().enumerate() {
        text.push_str(&format!("\n  {}. {}", i + 1, o.trim()));
    }
    if !req.options.is_empty() {
        text.push_str(if req.allow_freeform {
            "\nReply with a number or your own answer."
        } else {
            "\nReply with a number."
        });
    }
    // Always the session's own conversation: a question is never a way to reach a
    // destination the group was not granted.
    let mut own = msg.clone();
    own.message.route = Route::default();
    let to = d.address(session, &own)?;
    d.dispatcher().send(&to, &text, msg.id())
}

fn envelope(
    d: &Delivery,
    session: &Session,
    msg: &MessageOut,
    inbound: &mut EncryptedInboundWriter,
    a: &SystemAction,
) -> Result<Option<String>, Failure> {
    let name = a.action.trim();
    if NO_OPS.contains(&name) {
        return Ok(None);
    }
    if name == ACTION_LIST_TASKS {
        return list_tasks(d, session, msg, inbound).map(|()| None);
    }
    if name == ACTION_CANCEL_TASK {
        return cancel_task(d, session, msg, inbound, a).map(|()| None);
    }
    let Some(kind) = a.change_kind() else {
        return Err(Failure::permanent(format!(
            "unknown system action {name:?} refused: unknown actions are privileged and never run"
        )));
    };
    let by = UserId::for_sandbox(&session.id);
    let sub = Submission {
        kind,
        agent_group_id: session.agent_group_id.clone(),
        payload: a.payload.clone().unwrap_or_else(|| json!({})),
        reason: a.reason.clone(),
    };
    // Once per outbound row: a crash between this submit and the row being marked
    // delivered makes the next pass submit again, which must not ask a human twice.
    match d.gateway().submit_once(sub, &by, msg.id().as_str()) {
        Ok(record) => {
            tracing::info!(session = %session.id, change = %record.request.id, kind = %kind, "capability change requested by the agent; held for a human");
            Ok(Some(record.request.id.to_string()))
        }
        Err(e @ GatewayError::Invalid(_)) => Err(Failure::permanent(format!(
            "change request refused by the gateway: {e}"
        ))),
        Err(e) => Err(Failure::retryable(format!("gateway: {e}"))),
    }
}

fn session_inbound(d: &Delivery, session: &Session) -> Result<Vec<MessageIn>, Failure> {
    let mut r = d
        .manager()
        .inbound_reader(&session.id)
        .map_err(|e| Failure::retryable(e.to_string()))?;
    let mut rows = r.scheduled_messages().map_err(queue_failure)?.rows;
    // Due tasks the agent has not run yet are still tasks.
    rows.extend(
        r.pending_messages(Timestamp::now())
            .map_err(queue_failure)?
            .rows
            .into_iter()
            .filter(|m| m.status == Status::Scheduled),
    );
    rows.sort_by_key(|m| m.seq);
    rows.dedup_by(|a, b| a.seq == b.seq);
    Ok(rows)
}

fn list_tasks(
    d: &Delivery,
    session: &Session,
    msg: &MessageOut,
    inbound: &mut EncryptedInboundWriter,
) -> Result<(), Failure> {
    let tasks: Vec<Value> = session_inbound(d, session)?
        .iter()
        .map(|t| {
            json!({
                "task_id": t.id(),
                "run_at": t.message.process_after,
                "recurrence": t.message.recurrence,
                "prompt": t.message.content,
            })
        })
        .collect();
    let text = if tasks.is_empty() {
        "list_tasks: you have no scheduled tasks.".to_owned()
    } else {
        format!(
            "list_tasks: your scheduled tasks:\n{}",
            serde_json::to_string_pretty(&tasks).unwrap_or_default()
        )
    };
    reply_to_agent(inbound, msg.id(), text)
}

fn cancel_task(
    d: &Delivery,
    session: &Session,
    msg: &MessageOut,
    inbound: &mut EncryptedInboundWriter,
    a: &SystemAction,
) -> Result<(), Failure> {
    let id = a
        .payload
        .as_ref()
        .and_then(|p| p.get("task_id"))
        .and_then(Value::as_str)
        .map(str::trim)
        .unwrap_or("");
    let text = match MessageId::new(id) {
        Err(_) => format!("cancel_task: {id:?} is not a task id."),
        Ok(task) => {
            let tasks = session_inbound(d, session)?;
            let series = tasks
                .iter()
                .find(|t| t.id() == &task)
                .and_then(|t| t.message.series_id.clone());
            // Cancelling one occurrence of a series cancels the series.
            let ids: Vec<MessageId> = tasks
                .iter()
                .filter(|t| t.id() == &task || (series.is_some() && t.message.series_id == series))
                .map(|t| t.id().clone())
                .collect();
            if ids.is_empty() {
                format!("cancel_task: you have no scheduled task {task}.")
            } else {
                inbound.retire(&ids).map_err(queue_failure)?;
                format!("cancel_task: task {task} cancelled.")
            }
        }
    };
    reply_to_agent(inbound, msg.id(), text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn occurrence_ids_are_valid_stable_and_distinct() {
        let at = Timestamp::parse("2026-11-25T22:30:00Z").unwrap();
        let later = Timestamp::parse("2026-11-25T22:31:00Z").unwrap();
        // A series id as `schedule` derives it.
        let series = derived_id(
            "task",
            &MessageId::new("in_1795645836000000000_0a1b2c3d4e5f-0").unwrap(),
        );
        let a = occurrence_id(series.as_str(), at).unwrap();
        assert_eq!(a.as_str(), format!("{series}:1795645800"));
        assert_eq!(occurrence_id(series.as_str(), at).unwrap(), a, "stable");
        assert_ne!(occurrence_id(series.as_str(), later).unwrap(), a);
        // The longest series id still yields a valid, distinct id.
        let long = "t".repeat(128);
        let b = occurrence_id(&long, at).unwrap();
        assert!(b.as_str().starts_with("task-") && b.as_str().ends_with(":1795645800"));
        assert_ne!(occurrence_id(&"u".repeat(128), at).unwrap(), b);
    }
}
