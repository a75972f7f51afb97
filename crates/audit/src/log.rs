//! The daemon's handle on its audit log.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use ironclaw_contract::time::Timestamp;

use crate::record::{encode, AuditRecord, MAX_LINE_BYTES};
use crate::verify::{scan, ChainError, Scan, ScanError};
use crate::AuditEvent;

/// Why the audit log could not be opened or appended to. Callers fail closed on any of
/// these: an action that cannot be audited does not happen.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {path}: {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error(
        "audit log {path} has mode {mode:03o}, which lets group or others read or write it; \
         fix it with `chmod 600 {path}`"
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("audit log {path} is not a regular file (a symlink, directory or device?)")]
    NotAFile { path: PathBuf },
    /// The existing chain is broken: the log is not appended to until an operator has
    /// looked (`ironctl audit verify`).
    #[error("{0}; refusing to append to this audit log")]
    Chain(#[from] ChainError),
    #[error("audit event could not be encoded: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("audit record of {len} bytes exceeds the limit of {max} bytes", max = MAX_LINE_BYTES)]
    RecordTooLarge { len: usize },
    #[error(
        "audit log {path} is {actual} bytes long but this process wrote {expected}: \
         something else writes to it"
    )]
    ChangedUnderneath {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    #[error(
        "audit log {path}: an earlier write failed in a way that leaves the file's state \
         unknown; no more records are accepted until the daemon is restarted"
    )]
    Broken { path: PathBuf },
}

/// An open, verified audit log. One per file per machine: the chain state lives here,
/// so a second writer (another `AuditLog` on the same file, another process) would fork
/// the chain. [`AuditLog::append`] detects that the file grew behind its back and stops.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    /// Opened read + append. Writes go through the `Mutex`; reads use positional
    /// `read_at`, which needs no lock and does not disturb any file offset.
    file: File,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    seq: u64,
    last_hash: String,
    /// Bytes of acknowledged records. Everything in `[0, len)` is a verified chain and
    /// never changes while this handle lives.
    len: u64,
    /// Set when a failed write could not be undone: the file's tail is unknown.
    broken: bool,
}

impl AuditLog {
    /// Opens the log at `path`, creating it (mode 0600) if it does not exist.
    ///
    /// An existing file must be a regular file with no group/other permission bits, and
    /// its whole chain must verify; otherwise this fails ([`AuditError::Permissions`],
    /// [`AuditError::Chain`]) — the daemon fails closed rather than append to a log that
    /// was tampered with.
    ///
    /// A torn tail — a last line without its newline that is not a complete record —
    /// is what a crash during [`AuditLog::append`] leaves; that append never returned
    /// `Ok`, so nobody relied on it. It is truncated away, the truncation is synced,
    /// and a [`AuditEvent::TornTailRecovered`] record is appended. A newline-terminated
    /// bad line, or an unterminated line that *is* a complete record, is not something a
    /// crash produces, so it is reported as a broken chain instead.
    pub fn open(path: &Path) -> Result<AuditLog, AuditError> {
        let file = open_file(path)?;
        let io_err = |op| {
            let path = path.to_owned();
            move |source| AuditError::Io { path, op, source }
        };
        let len = file.metadata().map_err(io_err("stat"))?.len();
        let reader = BufReader::new(ReadAt {
            file: &file,
            pos: 0,
            end: len,
        });
        let Scan {
            report,
            good_len,
            torn,
        } = scan(reader, &mut |_| {}).map_err(|e| match e {
            ScanError::Io(source) => AuditError::Io {
                path: path.to_owned(),
                op: "read",
                source,
            },
            ScanError::Chain(c) => AuditError::Chain(c),
        })?;

        let log = AuditLog {
            path: path.to_owned(),
            file,
            state: Mutex::new(State {
                seq: report.last_seq,
                last_hash: report.last_hash,
                len: good_len,
                broken: false,
            }),
        };
        if let Some(torn) = torn {
            if torn.parses {
                return Err(AuditError::Chain(torn.into_error()));
            }
            log.file.set_len(good_len).map_err(io_err("truncate"))?;
            log.file.sync_all().map_err(io_err("fsync"))?;
            log.append(AuditEvent::TornTailRecovered {
                dropped_bytes: torn.bytes,
            })?;
        }
        Ok(log)
    }

    /// Appends `event` as the next record and returns it once it is durable: the line
    /// is written with a single `write` and `fdatasync`ed before this returns `Ok`.
    ///
    /// On `Err` the record is not acknowledged and the caller must not act as if it
    /// were audited. (After a failed sync the record may still reach the disk; the log
    /// then refuses further appends until reopened, which re-verifies it.)
    pub fn append(&self, event: AuditEvent) -> Result<AuditRecord, AuditError> {
        let event = serde_json::to_value(&event).map_err(AuditError::Encode)?;
        let mut st = self.lock();
        if st.broken {
            return Err(AuditError::Broken {
                path: self.path.clone(),
            });
        }
        // Seqs grow by one per line, so 2^64 records would be needed to overflow.
        let seq = st.seq.saturating_add(1);
        // Taken under the lock so that times are ordered like seqs (clock steps aside).
        let time = Timestamp::now();
        let enc = encode(seq, &time, &st.last_hash, &event).map_err(AuditError::Encode)?;
        if enc.line.len() > MAX_LINE_BYTES {
            return Err(AuditError::RecordTooLarge {
                len: enc.line.len(),
            });
        }
        let mut line = enc.line;
        line.push(b'\n');

        // Our chain state describes exactly `len` bytes; anything else means another
        // writer, and appending would fork the chain.
        let actual = self.file.metadata().map_err(|e| self.io("stat", e))?.len();
        if actual != st.len {
            st.broken = true;
            return Err(AuditError::ChangedUnderneath {
                path: self.path.clone(),
                expected: st.len,
                actual,
            });
        }

        // One write call: the file is opened O_APPEND, so the whole line lands at the
        // end in one piece or (short write, error) is rolled back below.
        let written = (&self.file).write(&line);
        let short = match written {
            Ok(n) if n == line.len() => None,
            Ok(n) => Some(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short write: {n} of {} bytes", line.len()),
            )),
            Err(e) => Some(e),
        };
        if let Some(e) = short {
            // Cut off whatever part of the line made it, so the file stays a clean
            // chain; if even that fails, the tail is unknown and we stop.
            if self.file.set_len(st.len).is_err() {
                st.broken = true;
            }
            return Err(self.io("write", e));
        }
        if let Err(e) = self.file.sync_data() {
            // After a failed fsync the kernel may have dropped the dirty pages; whether
            // the line is on disk is unknown. Refuse further appends; reopening verifies
            // whatever is there.
            st.broken = true;
            return Err(self.io("fsync", e));
        }

        let prev_hash = std::mem::replace(&mut st.last_hash, enc.hash.clone());
        st.seq = seq;
        st.len += line.len() as u64;
        Ok(AuditRecord {
            seq,
            time,
            prev_hash,
            event,
            hash: enc.hash,
        })
    }

    /// The last `limit` records, oldest first. Re-reads (and re-verifies) the
    /// acknowledged part of the file without holding up appends.
    pub fn tail(&self, limit: usize) -> Result<Vec<AuditRecord>, AuditError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let end = self.lock().len;
        let reader = BufReader::new(ReadAt {
            file: &self.file,
            pos: 0,
            end,
        });
        let mut kept = VecDeque::with_capacity(limit.min(1024));
        let scanned = scan(reader, &mut |rec| {
            if kept.len() == limit {
                kept.pop_front();
            }
            kept.push_back(rec);
        });
        match scanned {
            // `[0, len)` holds only complete lines, so there is never a torn tail here.
            Ok(_) => Ok(kept.into()),
            Err(ScanError::Io(e)) => Err(self.io("read", e)),
            Err(ScanError::Chain(c)) => Err(AuditError::Chain(c)),
        }
    }

    /// The seq of the last acknowledged record; 0 for an empty log.
    pub fn last_seq(&self) -> u64 {
        self.lock().seq
    }

    /// The hash of the last acknowledged record ([`crate::GENESIS_HASH`] for an empty
    /// log). Together with [`AuditLog::last_seq`], an anchor for
    /// [`crate::verify_against`].
    pub fn last_hash(&self) -> String {
        self.lock().last_hash.clone()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Verifies this log's whole chain while no append can run, so a record being
    /// written at that moment is never mistaken for a torn tail.
    pub fn verify(&self) -> Result<crate::VerifyReport, crate::ChainError> {
        let _appends_wait = self.lock();
        crate::verify(&self.path)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave `State` half-updated: it is only
        // written after the record is durable, by plain assignments that do not panic.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn io(&self, op: &'static str, source: io::Error) -> AuditError {
        AuditError::Io {
            path: self.path.clone(),
            op,
            source,
        }
    }
}

/// Opens an existing log after checking its type and mode, or creates a new one 0600.
fn open_file(path: &Path) -> Result<File, AuditError> {
    let io_err = |op: &'static str, source| AuditError::Io {
        path: path.to_owned(),
        op,
        source,
    };
    // `symlink_metadata` so that a symlink planted in the state dir is refused rather
    // than followed; the mode is checked again on the opened file (fstat) below.
    match fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_file() => {
            return Err(AuditError::NotAFile {
                path: path.to_owned(),
            })
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let file = OpenOptions::new()
                .read(true)
                .append(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| io_err("create", e))?;
            // The umask can only clear bits; set exactly 0600 so the owner can write.
            file.set_permissions(Permissions::from_mode(0o600))
                .map_err(|e| io_err("chmod", e))?;
            // Make the new directory entry durable, or a crash could lose the file with
            // records already acknowledged in it.
            let dir = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io_err("fsync directory", e))?;
            return Ok(file);
        }
        Err(e) => return Err(io_err("stat", e)),
    }

    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .open(path)
        .map_err(|e| io_err("open", e))?;
    let meta = file.metadata().map_err(|e| io_err("stat", e))?;
    if !meta.file_type().is_file() {
        return Err(AuditError::NotAFile {
            path: path.to_owned(),
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(AuditError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(file)
}

/// `Read` over `[pos, end)` of a file by positional reads, so readers share the
/// appending handle without a shared offset or a lock.
struct ReadAt<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end.saturating_sub(self.pos);
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}
