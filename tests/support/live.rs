//! Starting the real daemon for live gVisor tests: a state directory runsc's gofer can
//! traverse, and the static agent the dev image is packed from.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::Daemon;

/// The static agent (`.ci/run` and `dev/test.sh` build it before the tests).
pub fn static_agent() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let bin = exe
        .ancestors()
        .nth(3)
        .expect("target dir")
        .join("x86_64-unknown-linux-gnu/release/ironclaw-sandbox");
    assert!(
        bin.exists(),
        "{} is missing: RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --target x86_64-unknown-linux-gnu -p ironclaw-sandbox",
        bin.display()
    );
    bin
}

/// A temporary directory holding a daemon's state dir. The parent is 0711 and the state
/// dir 0700: runsc's gofer (an unprivileged mapped uid) must traverse down to the
/// session directories, and nothing else may list them.
pub struct LiveDir {
    pub dir: tempfile::TempDir,
    pub state: PathBuf,
}

impl LiveDir {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711))
            .expect("chmod 0711");
        let state = dir.path().join("state");
        std::fs::create_dir(&state).expect("state dir");
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700))
            .expect("chmod 0700");
        Self { dir, state }
    }

    /// The daemon in `--dev` on this state dir, sessions under runsc from the dev image
    /// of the static agent, plus `extra` flags.
    pub fn start_dev(&self, extra: &[&str]) -> Daemon {
        let socket = self.state.join("modelproxy.sock");
        let bin = static_agent();
        let mut args = vec![
            "--model-proxy-socket",
            path_str(&socket),
            "--sandbox-bin",
            path_str(&bin),
        ];
        args.extend_from_slice(extra);
        Daemon::start_dev(&self.state, &args)
    }
}

impl Default for LiveDir {
    fn default() -> Self {
        Self::new()
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 test paths")
}
