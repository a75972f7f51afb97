//! The binary's configuration checks and their exit codes (see `--help`; key and queue
//! failures are in `startup.rs`). The full loop is
//! exercised in `tests/sandbox_agent.rs`, which can use host crates to play the host.

// Test code: a panic here is the test failing, with its location (the workspace
// denies unwrap and expect outside tests; clippy cannot tell an integration test's
// helpers are).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

use ironclaw_contract::db::{open_writer, Cipher};
use ironclaw_contract::key::SessionKey;
use ironclaw_contract::schema::QueueFile;

fn sandbox(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ironclaw-sandbox"))
        .args(args)
        .output()
        .expect("run ironclaw-sandbox")
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited normally")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new(key: [u8; 32]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("session.key"), hex(&key)).unwrap();
        let f = Self { dir };
        let cipher = Cipher::Key(SessionKey::from_bytes(key));
        open_writer(&f.path("inbound.db"), &cipher, QueueFile::Inbound).unwrap();
        f
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    fn args(&self) -> Vec<String> {
        let p = |n: &str| self.path(n).display().to_string();
        vec![
            "--key-file".into(),
            p("session.key"),
            "--inbound".into(),
            p("inbound.db"),
            "--outbound".into(),
            p("outbound.db"),
            "--model-socket".into(),
            p("model.sock"),
            "--workspace".into(),
            p("workspace"),
            "--persona-file".into(),
            p("persona.md"),
            "--check".into(),
        ]
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn run(f: &Files, extra: &[&str]) -> Output {
    let mut args = f.args();
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    sandbox(&refs)
}

fn listen(path: &Path) -> std::os::unix::net::UnixListener {
    std::os::unix::net::UnixListener::bind(path).unwrap()
}

#[test]
fn help_documents_the_exit_codes_and_version_works() {
    let o = sandbox(&["--help"]);
    assert_eq!(code(&o), 0);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("EXIT CODES"));
    assert!(text.contains("--enabled-tools"));
    assert_eq!(code(&sandbox(&["--version"])), 0);
    assert_eq!(code(&sandbox(&["--no-such-flag"])), 2);
}

#[test]
fn an_unreachable_model_socket_exits_6() {
    let f = Files::new([1; 32]);
    let o = run(&f, &[]);
    assert_eq!(code(&o), 6, "{}", stderr(&o));
    assert!(stderr(&o).contains("model proxy socket"));
}

#[test]
fn a_forbidden_tool_exits_7_and_a_good_configuration_passes_the_check() {
    let f = Files::new([1; 32]);
    let _proxy = listen(&f.path("model.sock"));
    let o = run(&f, &["--enabled-tools", "send_message,set_persona"]);
    assert_eq!(code(&o), 7, "{}", stderr(&o));
    assert!(stderr(&o).contains("set_persona"));
    // File tools need the workspace.
    let o = run(&f, &["--enabled-tools", "read_file"]);
    assert_eq!(code(&o), 7, "{}", stderr(&o));
    std::fs::create_dir(f.path("workspace")).unwrap();
    let o = run(&f, &["--enabled-tools", "send_message, read_file"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("(4 tools)"));
}

#[test]
fn a_real_provider_without_a_model_is_a_usage_error() {
    let f = Files::new([1; 32]);
    let _proxy = listen(&f.path("model.sock"));
    let o = run(&f, &["--provider", "anthropic"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert_eq!(
        code(&run(&f, &["--provider", "anthropic", "--model", "m"])),
        0
    );
}

#[test]
fn an_oversized_persona_exits_7() {
    let f = Files::new([1; 32]);
    let _proxy = listen(&f.path("model.sock"));
    std::fs::write(f.path("persona.md"), vec![b'a'; 70 * 1024]).unwrap();
    assert_eq!(code(&run(&f, &[])), 7);
}
