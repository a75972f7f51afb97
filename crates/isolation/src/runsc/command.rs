//! Running one runsc process: the global flags prepended, a timeout after which a hung
//! runsc is killed and reported, stdout bounded, and only the end of stderr kept (the
//! [`Tail`] drained on a thread), so no runsc or container output can grow without
//! bound in memory.
//!
//! Not for: what a subcommand means (the verb files) or the container's own lifetime,
//! which is never tied to these processes.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use super::{RunscError, RunscIsolator, STDERR_TAIL};

/// Upper bound on the stdout read from one runsc call (`list`, `state`).
const STDOUT_LIMIT: usize = 4 << 20;

/// The end of a byte stream, at most `cap` bytes.
#[derive(Debug)]
pub(super) struct Tail {
    buf: VecDeque<u8>,
    cap: usize,
    pub(super) closed: bool,
}

impl Tail {
    pub(super) fn new(cap: usize) -> Self {
        Self {
            buf: VecDeque::new(),
            cap,
            closed: false,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        let bytes = &bytes[bytes.len().saturating_sub(self.cap)..];
        let overflow = (self.buf.len() + bytes.len()).saturating_sub(self.cap);
        self.buf.drain(..overflow);
        self.buf.extend(bytes);
    }

    pub(super) fn text(&self) -> String {
        let (a, b) = self.buf.as_slices();
        let mut v = Vec::with_capacity(a.len() + b.len());
        v.extend_from_slice(a);
        v.extend_from_slice(b);
        String::from_utf8_lossy(&v).trim().to_owned()
    }
}

pub(super) type SharedTail = Arc<Mutex<Tail>>;

/// Reads `from` to its end on a thread, keeping the last `cap` bytes.
pub(super) fn drain(from: impl Read + Send + 'static, cap: usize) -> SharedTail {
    let tail = Arc::new(Mutex::new(Tail::new(cap)));
    let t = Arc::clone(&tail);
    thread::spawn(move || {
        let mut from = from;
        let mut buf = [0u8; 4096];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => lock(&t).push(&buf[..n]),
            }
        }
        lock(&t).closed = true;
    });
    tail
}

/// A poisoned lock only means another thread panicked while appending bytes; the
/// buffer is still a valid tail, so it is used as is.
pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The output of one finished runsc call.
pub(super) struct Captured {
    pub(super) status: ExitStatus,
    pub(super) stdout: Vec<u8>,
    pub(super) stderr: String,
}

impl RunscIsolator {
    /// Runs `runsc <global flags> <args>` and requires success. A failure whose stderr
    /// says the container does not exist becomes [`RunscError::NotFound`].
    pub(super) fn run_ok(
        &self,
        op: &'static str,
        id: &str,
        args: &[OsString],
    ) -> Result<Captured, RunscError> {
        let mut all = self.global_args();
        all.extend(args.iter().cloned());
        let refs: Vec<&OsStr> = all.iter().map(OsString::as_os_str).collect();
        let out = self.run_raw(op, id, &refs, STDERR_TAIL)?;
        if out.status.success() {
            return Ok(out);
        }
        if out.stderr.contains("does not exist") || out.stderr.contains("not found") {
            return Err(RunscError::NotFound { id: id.to_owned() });
        }
        Err(RunscError::Failed {
            op,
            id: id.to_owned(),
            status: out.status.to_string(),
            stderr: out.stderr,
        })
    }

    /// Runs runsc with exactly `args`, with a timeout, capturing stdout (bounded) and
    /// the last `stderr_limit` bytes of stderr.
    pub(super) fn run_raw(
        &self,
        op: &'static str,
        id: &str,
        args: &[&OsStr],
        stderr_limit: usize,
    ) -> Result<Captured, RunscError> {
        let mut child = Command::new(&self.binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| self.spawn_error(e))?;
        let stdout = child.stdout.take().map(|out| {
            thread::spawn(move || {
                let mut v = Vec::new();
                let _ = out.take(STDOUT_LIMIT as u64).read_to_end(&mut v);
                v
            })
        });
        let stderr = child.stderr.take().map(|e| drain(e, stderr_limit));
        let status = self.wait_child(&mut child, op, id)?;
        let stdout = stdout.and_then(|h| h.join().ok()).unwrap_or_default();
        let stderr = match stderr {
            Some(t) => {
                // The process has exited; its pipe closes with it unless it left a
                // child holding it (none of these subcommands does). Bounded wait.
                let deadline = Instant::now() + Duration::from_secs(1);
                while !lock(&t).closed && Instant::now() < deadline {
                    thread::sleep(Duration::from_millis(2));
                }
                let text = lock(&t).text();
                text
            }
            None => String::new(),
        };
        Ok(Captured {
            status,
            stdout,
            stderr,
        })
    }

    /// Waits for `child` up to the command timeout; kills it when the time is up.
    pub(super) fn wait_child(
        &self,
        child: &mut Child,
        op: &'static str,
        id: &str,
    ) -> Result<ExitStatus, RunscError> {
        let deadline = Instant::now() + self.timeout;
        let mut pause = Duration::from_millis(1);
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Ok(status),
                Ok(None) => {}
                Err(source) => {
                    return Err(RunscError::Spawn {
                        binary: self.binary.clone(),
                        source,
                    })
                }
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(RunscError::Timeout {
                    op,
                    id: id.to_owned(),
                    after: self.timeout,
                });
            }
            thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    pub(super) fn spawn_error(&self, source: io::Error) -> RunscError {
        if source.kind() == io::ErrorKind::NotFound {
            RunscError::NotInstalled {
                binary: self.binary.clone(),
            }
        } else {
            RunscError::Spawn {
                binary: self.binary.clone(),
                source,
            }
        }
    }
}

/// The last `max` bytes of `s`, on a character boundary.
pub(super) fn tail_of(s: &str, max: usize) -> String {
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s[start..].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_end() {
        let mut t = Tail::new(5);
        t.push(b"abc");
        t.push(b"defg");
        assert_eq!(t.text(), "cdefg");
        t.push(b"0123456789");
        assert_eq!(t.text(), "56789");
        assert_eq!(tail_of("héllo", 4), "llo");
    }
}
