//! The agent's host-forwarded actions, live (issue #6), from web chat through an agent
//! in a real `runsc` sandbox (mock provider directives) to the host's re-authorized
//! handling and back:
//! - `schedule_task` fires at its time, into the conversation, and recurs; `list_tasks`
//!   shows the series and `cancel_task` ends it;
//! - `ask_user_question` is shown to the human in their conversation and the human's
//!   answer reaches the agent as an ordinary message.
//!
//! Needs root, `runsc` and the static agent (`dev/test.sh` builds it); never skipped.
//! Takes a little over a minute: the shortest recurrence is one minute.

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant, SystemTime};

use ironclaw_e2e::chat::{ChatApi, ChatStream};
use ironclaw_e2e::live::LiveDir;
use serde_json::Value;

const GROUP: &str = "dev-agent";

fn text(m: &Value) -> &str {
    m["text"].as_str().unwrap_or_default()
}

/// The next agent message whose text satisfies `want`, skipping others.
fn wait_for(
    stream: &ChatStream,
    within: Duration,
    what: &str,
    want: impl Fn(&str) -> bool,
    log: &dyn Fn() -> String,
) -> (Instant, Value) {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match stream.next_agent(left) {
            Some((at, m)) if want(text(&m)) => return (at, m),
            Some(_) => {}
            None => panic!("no agent message {what} within {within:?}\n{}", log()),
        }
    }
}

/// RFC 3339 UTC of now + `ahead` (whole seconds).
fn rfc3339_in(ahead: Duration) -> String {
    let secs = (SystemTime::now() + ahead)
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
}

#[test]
fn scheduled_tasks_fire_and_recur_and_questions_round_trip() {
    let live = LiveDir::new();
    let d = live.start_dev(&[]);
    let api = ChatApi::new(&d.addr, &d.dev_token());
    let log = || d.log();

    // A conversation with a warm session.
    let first = api.send(GROUP, None, "hello");
    let conv = first["conversation_id"]
        .as_str()
        .expect("conversation")
        .to_owned();
    assert!(
        api.agent_reply(&conv, 0, Duration::from_secs(90)).is_some(),
        "no first reply\n{}",
        d.log()
    );
    let stream = api.follow(&conv);

    // A question for the human, shown in their conversation ...
    api.send(
        GROUP,
        Some(&conv),
        r#"tool:ask_user_question {"question":"Which colour should the report use?","options":["red","blue"]}"#,
    );
    let (_, q) = wait_for(
        &stream,
        Duration::from_secs(30),
        "asking the question",
        |t| t.starts_with("Question from the agent: Which colour should the report use?"),
        &log,
    );
    assert!(
        text(&q).contains("1. red") && text(&q).contains("2. blue"),
        "{q}"
    );
    wait_for(
        &stream,
        Duration::from_secs(30),
        "confirming the tool ran",
        |t| t.starts_with("mock: tool result"),
        &log,
    );
    // ... and the human's answer reaches the agent as a message.
    api.send(GROUP, Some(&conv), "blue, please");
    wait_for(
        &stream,
        Duration::from_secs(30),
        "answering after the human's answer",
        |t| t.starts_with("mock: ") && t.contains("blue, please"),
        &log,
    );

    // A task three seconds from now, every minute.
    let run_at = rfc3339_in(Duration::from_secs(3));
    let scheduled_at = Instant::now();
    api.send(
        GROUP,
        Some(&conv),
        &format!(
            r#"tool:schedule_task {{"prompt":"water the plants","run_at":"{run_at}","recurrence":"1m"}}"#
        ),
    );
    wait_for(
        &stream,
        Duration::from_secs(30),
        "confirming the schedule",
        |t| t.starts_with("mock: tool result"),
        &log,
    );
    let (fired, _) = wait_for(
        &stream,
        Duration::from_secs(40),
        "from the first run of the task",
        |t| t == "mock: water the plants",
        &log,
    );
    let first_after = fired - scheduled_at;
    // Whole-second run_at: the task is due 2-3 s after it was asked for.
    assert!(
        first_after >= Duration::from_secs(2),
        "the task ran early: {first_after:?} after scheduling"
    );
    let (again, _) = wait_for(
        &stream,
        Duration::from_secs(90),
        "from the second run of the task",
        |t| t == "mock: water the plants",
        &log,
    );
    let period = again - fired;
    assert!(
        period >= Duration::from_secs(55) && period <= Duration::from_secs(75),
        "recurred after {period:?}, not about a minute"
    );
    eprintln!("task ran {first_after:?} after scheduling, again {period:?} later");

    // The series is listed (the host answers the agent with a message, which the mock
    // echoes into the conversation) and can be cancelled, by the agent only.
    api.send(GROUP, Some(&conv), "tool:list_tasks {}");
    let (_, listed) = wait_for(
        &stream,
        Duration::from_secs(30),
        "echoing the task list",
        |t| t.starts_with("mock: list_tasks: your scheduled tasks:"),
        &log,
    );
    let listed = text(&listed);
    assert!(
        listed.contains("water the plants") && listed.contains("1m"),
        "{listed}"
    );
    let task_id = listed
        .split("\"task_id\": \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no task id in {listed}"))
        .to_owned();
    api.send(
        GROUP,
        Some(&conv),
        &format!(r#"tool:cancel_task {{"task_id":"{task_id}"}}"#),
    );
    wait_for(
        &stream,
        Duration::from_secs(30),
        "echoing the cancellation",
        |t| t.starts_with("mock: cancel_task: task") && t.contains("cancelled"),
        &log,
    );
    api.send(GROUP, Some(&conv), "tool:list_tasks {}");
    wait_for(
        &stream,
        Duration::from_secs(30),
        "echoing the empty task list",
        |t| t.starts_with("mock: list_tasks: you have no scheduled tasks."),
        &log,
    );
    d.stop();
}
