//! The tool registry, the workspace jail and each tool's output.

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::symlink;

use ironclaw_agent::tools::{Effect, RegistryError, Tool, ToolContext, ToolError, ToolRegistry};
use ironclaw_agent::workspace::{PathError, Workspace, MAX_LIST_ENTRIES, MAX_WRITE_BYTES};
use ironclaw_contract::actions::{parse_action, ActionBody};
use ironclaw_contract::enums::ChangeKind;
use ironclaw_contract::queue::InboundWriter;
use ironclaw_contract::rows::{Destination, Route, SessionRouting};
use ironclaw_contract::tools::{FORBIDDEN_TOOL_NAMES, MANDATORY_TOOLS, OPTIONAL_TOOLS};
use ironclaw_queue::MemoryQueue;
use proptest::prelude::*;
use serde_json::{json, Value};

fn ws() -> (tempfile::TempDir, Workspace) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("workspace");
    std::fs::create_dir(&root).unwrap();
    let ws = Workspace::open(&root).unwrap();
    (dir, ws)
}

fn queue_with_routes() -> MemoryQueue {
    let mut q = MemoryQueue::new();
    q.upsert_destinations(&[
        Destination {
            name: "ops".into(),
            display_name: Some("Ops room".into()),
            kind: "channel".into(),
            channel_type: Some("slack".into()),
            platform_id: Some("C999".into()),
            agent_group_id: None,
        },
        Destination {
            name: "alerts".into(),
            display_name: None,
            kind: "channel".into(),
            channel_type: Some("slack".into()),
            platform_id: Some("C123".into()),
            agent_group_id: None,
        },
        Destination {
            name: "nowhere".into(),
            display_name: None,
            kind: "channel".into(),
            channel_type: None,
            platform_id: None,
            agent_group_id: None,
        },
    ])
    .unwrap();
    q.set_session_routing(&SessionRouting {
        channel_type: "discord".into(),
        platform_id: "D1".into(),
        thread_id: Some("t-9".into()),
    })
    .unwrap();
    q
}

fn call(
    reg: &ToolRegistry,
    ws: Option<&Workspace>,
    q: &mut MemoryQueue,
    name: &str,
    input: Value,
) -> Result<ironclaw_agent::ToolOutput, ToolError> {
    let mut ctx = ToolContext {
        workspace: ws,
        persona: "be terse",
        inbound: q,
    };
    reg.invoke(name, &input, &mut ctx)
}

fn system_body(out: &ironclaw_agent::ToolOutput) -> ActionBody {
    match &out.effect {
        Some(Effect::SystemAction { body }) => parse_action(body.as_bytes()).unwrap(),
        other => panic!("expected a system action, got {other:?}"),
    }
}

#[test]
fn forbidden_and_unknown_names_are_refused() {
    let mut reg = ToolRegistry::new();
    for name in FORBIDDEN_TOOL_NAMES {
        assert_eq!(
            reg.register(name),
            Err(RegistryError::Forbidden {
                name: (*name).into()
            })
        );
    }
    // Case and whitespace do not smuggle a forbidden name in.
    assert!(matches!(
        reg.register(" Set_Persona "),
        Err(RegistryError::Forbidden { .. })
    ));
    for name in ["echo", "http_fetch_all", "", "create_agent"] {
        assert!(
            matches!(reg.register(name), Err(RegistryError::Unknown { .. })),
            "{name}"
        );
    }
    reg.register("read_file").unwrap();
    assert!(matches!(
        reg.register("read_file"),
        Err(RegistryError::Duplicate { .. })
    ));
    assert!(matches!(
        ToolRegistry::for_group(&["read_file", "self_edit"]),
        Err(RegistryError::Forbidden { .. })
    ));
    assert!(matches!(
        ToolRegistry::for_group(&["nope"]),
        Err(RegistryError::Unknown { .. })
    ));
}

#[test]
fn mandatory_tools_are_always_offered() {
    let none: [&str; 0] = [];
    let reg = ToolRegistry::for_group(&none).unwrap();
    assert_eq!(reg.names(), {
        let mut m = MANDATORY_TOOLS.to_vec();
        m.sort_unstable();
        m
    });
    let reg =
        ToolRegistry::for_group(&["schedule_task", "ask_user_question", "schedule_task"]).unwrap();
    assert_eq!(
        reg.names(),
        [
            "ask_user_question",
            "request_capability_change",
            "schedule_task"
        ]
    );
    let specs = reg.specs();
    assert_eq!(specs.len(), 3);
    assert!(specs.windows(2).all(|w| w[0].name < w[1].name));
    // Not offered → refused at invoke, whatever the catalog holds.
    let mut q = MemoryQueue::new();
    assert!(matches!(
        call(&reg, None, &mut q, "read_file", json!({"path": "x"})),
        Err(ToolError::NotOffered { .. })
    ));
    assert!(matches!(
        call(&reg, None, &mut q, "exec", json!({})),
        Err(ToolError::NotOffered { .. })
    ));
}

#[test]
fn catalog_matches_the_contract_and_schemas_are_objects() {
    let all = ToolRegistry::all();
    let mut expected: Vec<&str> = MANDATORY_TOOLS
        .iter()
        .chain(OPTIONAL_TOOLS)
        .copied()
        .collect();
    expected.sort_unstable();
    assert_eq!(all.names(), expected);
    for t in Tool::ALL {
        let s = t.input_schema();
        assert_eq!(s["type"], "object", "{}", t.name());
        assert!(s["properties"].is_object());
        assert!(!t.description().is_empty());
    }
    let kinds = Tool::RequestCapabilityChange.input_schema()["properties"]["kind"]["enum"].clone();
    let kinds: Vec<String> = serde_json::from_value(kinds).unwrap();
    assert!(kinds.contains(&"packages".to_owned()));
    assert!(!kinds.contains(&"create_agent".to_owned()));
}

#[test]
fn workspace_read_write_list() {
    let (_d, ws) = ws();
    let reg = ToolRegistry::all();
    let mut q = MemoryQueue::new();
    let out = call(
        &reg,
        Some(&ws),
        &mut q,
        "write_file",
        json!({"path": "sub/note.txt", "content": "hello"}),
    )
    .unwrap();
    assert_eq!(out.text, "wrote 5 bytes to sub/note.txt");
    assert!(out.effect.is_none());
    let out = call(
        &reg,
        Some(&ws),
        &mut q,
        "read_file",
        json!({"path": "sub/note.txt"}),
    )
    .unwrap();
    assert_eq!(out.text, "hello");
    let out = call(&reg, Some(&ws), &mut q, "list_dir", json!({"path": "sub"})).unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&out.text).unwrap(),
        json!({"entries": [{"name": "note.txt", "is_dir": false}], "truncated": false})
    );
    let out = call(&reg, Some(&ws), &mut q, "list_dir", Value::Null).unwrap();
    assert!(out.text.contains(r#""name":"sub","is_dir":true"#));
    // Overwrite works; `./` is fine.
    call(
        &reg,
        Some(&ws),
        &mut q,
        "write_file",
        json!({"path": "./sub/note.txt", "content": "bye"}),
    )
    .unwrap();
    assert_eq!(ws.read_file("sub/note.txt").unwrap(), "bye");
    // No temp files left behind.
    assert_eq!(ws.list_dir("sub").unwrap().entries.len(), 1);
}

#[test]
fn workspace_refuses_escapes() {
    let (dir, ws) = ws();
    std::fs::write(dir.path().join("secret.txt"), "s3cret").unwrap();
    assert!(matches!(
        ws.read_file("../secret.txt"),
        Err(PathError::Traversal { .. })
    ));
    assert!(matches!(
        ws.read_file("a/../../secret.txt"),
        Err(PathError::Traversal { .. })
    ));
    assert!(matches!(
        ws.read_file("/etc/passwd"),
        Err(PathError::Absolute { .. })
    ));
    assert!(matches!(
        ws.write_file("/tmp/x", "x"),
        Err(PathError::Absolute { .. })
    ));
    assert!(matches!(
        ws.write_file("../x", "x"),
        Err(PathError::Traversal { .. })
    ));
    assert!(matches!(
        ws.list_dir(".."),
        Err(PathError::Traversal { .. })
    ));
    assert!(matches!(ws.read_file(""), Err(PathError::Empty)));
    assert!(matches!(ws.read_file("a\0b"), Err(PathError::Nul)));

    // A symlink pointing outside: neither readable, nor writable, nor listable.
    symlink(dir.path().join("secret.txt"), ws.root().join("link")).unwrap();
    symlink(dir.path(), ws.root().join("outdir")).unwrap();
    let e = ws.read_file("link").unwrap_err();
    assert!(matches!(e, PathError::Escapes { .. }), "{e}");
    assert!(e.to_string().contains("outside the workspace"));
    assert!(matches!(
        ws.write_file("link", "pwned"),
        Err(PathError::Symlink { .. })
    ));
    assert!(matches!(
        ws.write_file("outdir/new.txt", "pwned"),
        Err(PathError::Escapes { .. })
    ));
    assert!(matches!(
        ws.read_file("outdir/secret.txt"),
        Err(PathError::Escapes { .. })
    ));
    assert!(matches!(
        ws.list_dir("outdir"),
        Err(PathError::Escapes { .. })
    ));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("secret.txt")).unwrap(),
        "s3cret"
    );
    assert!(!dir.path().join("new.txt").exists());

    // A symlink inside the workspace is fine to read through, still not to write.
    ws.write_file("real.txt", "ok").unwrap();
    symlink(ws.root().join("real.txt"), ws.root().join("inner")).unwrap();
    assert_eq!(ws.read_file("inner").unwrap(), "ok");
    assert!(matches!(
        ws.write_file("inner", "x"),
        Err(PathError::Symlink { .. })
    ));
}

#[test]
fn workspace_size_caps() {
    let (_d, ws) = ws();
    let big = "x".repeat(MAX_WRITE_BYTES + 1);
    let e = ws.write_file("big.txt", &big).unwrap_err();
    assert!(matches!(e, PathError::TooLarge { .. }));
    assert!(e.to_string().contains("the limit is 1048576"));
    assert!(!ws.root().join("big.txt").exists());
    ws.write_file("max.txt", &big[1..]).unwrap();
    std::fs::write(ws.root().join("huge.txt"), &big).unwrap();
    assert!(matches!(
        ws.read_file("huge.txt"),
        Err(PathError::TooLarge { .. })
    ));
    assert_eq!(ws.read_file("max.txt").unwrap().len(), MAX_WRITE_BYTES);
    std::fs::write(ws.root().join("bin"), [0xff, 0xfe, 0]).unwrap();
    assert!(matches!(
        ws.read_file("bin"),
        Err(PathError::NotText { .. })
    ));
    assert!(matches!(
        ws.read_file("missing"),
        Err(PathError::NotFound { .. })
    ));
    std::fs::create_dir(ws.root().join("d")).unwrap();
    assert!(matches!(
        ws.read_file("d"),
        Err(PathError::IsDirectory { .. })
    ));
    assert!(matches!(
        ws.write_file("d", "x"),
        Err(PathError::IsDirectory { .. })
    ));
    assert!(matches!(
        ws.write_file("max.txt/x", "x"),
        Err(PathError::NotDirectory { .. })
    ));
    for i in 0..MAX_LIST_ENTRIES + 5 {
        std::fs::write(ws.root().join("d").join(format!("f{i:05}")), "").unwrap();
    }
    let l = ws.list_dir("d").unwrap();
    assert_eq!(l.entries.len(), MAX_LIST_ENTRIES);
    assert!(l.truncated);
}

#[test]
fn file_tools_without_workspace_or_with_bad_input() {
    let reg = ToolRegistry::all();
    let mut q = MemoryQueue::new();
    assert!(matches!(
        call(&reg, None, &mut q, "read_file", json!({"path": "x"})),
        Err(ToolError::NoWorkspace)
    ));
    let (_d, ws) = ws();
    for input in [
        json!("x"),
        json!([1]),
        json!({"path": 3}),
        json!({"path": "x", "extra": 1}),
    ] {
        let e = call(&reg, Some(&ws), &mut q, "read_file", input.clone()).unwrap_err();
        assert!(matches!(e, ToolError::BadInput { .. }), "{input}: {e}");
    }
    assert!(matches!(
        call(&reg, Some(&ws), &mut q, "read_file", json!({})),
        Err(ToolError::Path(PathError::Empty))
    ));
}

#[test]
fn send_message_and_destinations() {
    let reg = ToolRegistry::all();
    let mut q = queue_with_routes();
    let out = call(
        &reg,
        None,
        &mut q,
        "send_message",
        json!({"text": "hi", "to": "ALERTS"}),
    )
    .unwrap();
    assert_eq!(
        out.effect,
        Some(Effect::Send {
            route: Route {
                channel_type: Some("slack".into()),
                platform_id: Some("C123".into()),
                thread_id: None
            },
            content: "hi".into()
        })
    );
    let out = call(&reg, None, &mut q, "send_message", json!({"text": "yo"})).unwrap();
    assert_eq!(
        out.effect,
        Some(Effect::Send {
            route: Route {
                channel_type: Some("discord".into()),
                platform_id: Some("D1".into()),
                thread_id: Some("t-9".into())
            },
            content: "yo".into()
        })
    );
    let e = call(
        &reg,
        None,
        &mut q,
        "send_message",
        json!({"text": "x", "to": "boss"}),
    )
    .unwrap_err();
    assert!(e.to_string().contains("alerts, nowhere, ops"), "{e}");
    let e = call(
        &reg,
        None,
        &mut q,
        "send_message",
        json!({"text": "x", "to": "nowhere"}),
    )
    .unwrap_err();
    assert!(e.to_string().contains("no channel/platform"), "{e}");
    assert!(matches!(
        call(&reg, None, &mut q, "send_message", json!({"text": "  "})),
        Err(ToolError::BadInput { .. })
    ));
    // No routing and no destinations.
    let mut empty = MemoryQueue::new();
    let e = call(&reg, None, &mut empty, "send_message", json!({"text": "x"})).unwrap_err();
    assert!(e.to_string().contains("no routing"), "{e}");
    let e = call(
        &reg,
        None,
        &mut empty,
        "send_message",
        json!({"text": "x", "to": "a"}),
    )
    .unwrap_err();
    assert!(e.to_string().contains("none configured"), "{e}");

    let out = call(&reg, None, &mut q, "list_destinations", json!({})).unwrap();
    let list: Vec<Value> = serde_json::from_str(&out.text).unwrap();
    let names: Vec<&str> = list.iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["alerts", "nowhere", "ops"]);
    assert_eq!(list[2]["display_name"], "Ops room");
    assert_eq!(list[0]["channel"], "slack");
}

#[test]
fn host_forwarded_tools_produce_contract_bodies() {
    let reg = ToolRegistry::all();
    let mut q = MemoryQueue::new();

    let out = call(
        &reg,
        None,
        &mut q,
        "schedule_task",
        json!({"prompt": "summarize my inbox", "run_at": " 2026-06-16T09:00:00Z ", "recurrence": "daily"}),
    )
    .unwrap();
    match system_body(&out) {
        ActionBody::Schedule(r) => {
            assert_eq!(r.prompt, "summarize my inbox");
            assert_eq!(r.run_at, "2026-06-16T09:00:00Z");
            assert_eq!(r.recurrence, "daily");
        }
        other => panic!("{other:?}"),
    }
    for bad in [
        json!({"prompt": " "}),
        json!({"prompt": "x", "run_at": "tomorrow"}),
        json!({"prompt": "x", "recurrence": "fortnightly"}),
        json!({"prompt": "x", "recurrence": "5s"}),
        json!({"prompt": "x", "command": "rm -rf /"}),
        json!({}),
    ] {
        assert!(
            call(&reg, None, &mut q, "schedule_task", bad.clone()).is_err(),
            "{bad}"
        );
    }

    let out = call(&reg, None, &mut q, "list_tasks", Value::Null).unwrap();
    match system_body(&out) {
        ActionBody::Envelope(a) => {
            assert_eq!(a.action, "list_tasks");
            assert_eq!(a.payload, None);
        }
        other => panic!("{other:?}"),
    }

    let out = call(
        &reg,
        None,
        &mut q,
        "cancel_task",
        json!({"task_id": " abc123 "}),
    )
    .unwrap();
    match system_body(&out) {
        ActionBody::Envelope(a) => {
            assert_eq!(a.action, "cancel_task");
            assert_eq!(a.payload, Some(json!({"task_id": "abc123"})));
        }
        other => panic!("{other:?}"),
    }
    for bad in [json!({}), json!({"task_id": "  "}), Value::Null] {
        assert!(call(&reg, None, &mut q, "cancel_task", bad).is_err());
    }

    let out = call(
        &reg,
        None,
        &mut q,
        "ask_user_question",
        json!({"question": "Deploy where?", "options": ["staging", " ", "production"], "allow_freeform": true}),
    )
    .unwrap();
    match system_body(&out) {
        ActionBody::AskUser(r) => {
            assert_eq!(r.options, ["staging", "production"]);
            assert!(r.allow_freeform);
        }
        other => panic!("{other:?}"),
    }
    assert!(call(
        &reg,
        None,
        &mut q,
        "ask_user_question",
        json!({"question": ""})
    )
    .is_err());
    assert!(call(&reg, None, &mut q, "ask_user_question", json!("Deploy?")).is_err());

    let out = call(
        &reg,
        None,
        &mut q,
        "request_capability_change",
        json!({"kind": "packages", "payload": {"add": ["jq"]}, "reason": "need jq"}),
    )
    .unwrap();
    match system_body(&out) {
        ActionBody::Envelope(a) => {
            assert_eq!(a.change_kind(), Some(ChangeKind::Packages));
            assert_eq!(a.payload, Some(json!({"add": ["jq"]})));
            assert_eq!(a.reason.as_deref(), Some("need jq"));
        }
        other => panic!("{other:?}"),
    }
    for bad in [
        json!({"kind": "mcp_takeover", "payload": {}}),
        json!({"kind": "create_agent", "payload": {"name": "x"}}),
        json!({"kind": "packages"}),
        json!({"kind": "packages", "payload": null}),
        json!({"kind": "packages", "payload": "jq"}),
        json!({"kind": "packages", "payload": ["jq"]}),
    ] {
        let e = call(&reg, None, &mut q, "request_capability_change", bad.clone()).unwrap_err();
        assert!(matches!(e, ToolError::BadInput { .. }), "{bad}: {e}");
    }

    let out = call(&reg, None, &mut q, "read_persona", json!({})).unwrap();
    assert_eq!(out.text, "be terse");
}

proptest! {
    /// No input makes any tool panic, and nothing escapes the workspace.
    #[test]
    fn tools_are_total(
        tool in proptest::sample::select(Tool::ALL.to_vec()),
        path in "[a-z./\\\\ -]{0,20}",
        text in ".{0,20}",
    ) {
        let (_d, ws) = ws();
        let reg = ToolRegistry::all();
        let mut q = queue_with_routes();
        for input in [
            json!({"path": path, "content": text}),
            json!({"path": path}),
            json!({"text": text, "to": path}),
            json!({"prompt": text, "run_at": path, "recurrence": text}),
            json!({"kind": text, "payload": {"x": path}}),
            json!({"question": text, "options": [path]}),
            json!({"task_id": text}),
            json!(text),
        ] {
            let _ = call(&reg, Some(&ws), &mut q, tool.name(), input);
        }
        // Whatever was written stayed under the root's parent only via the root.
        let parent = ws.root().parent().unwrap();
        let outside: Vec<_> = std::fs::read_dir(parent).unwrap().map(|e| e.unwrap().file_name()).collect();
        prop_assert_eq!(outside, vec![std::ffi::OsString::from("workspace")]);
    }
}
