//! Taking the snapshot and writing the archive. The parent module says why the copy is
//! consistent; this one does it: walk and copy into a private staging directory next
//! to the output, verify the staging copy, then write the tar and link it into place.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ironclaw_contract::paths::HostLayout;
use ironclaw_contract::time::Timestamp;
use ironclaw_keys::{KeyCustodian, KeyError};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::fsx::{self, Dir};
use super::{
    verify_state, AuditAnchor, BackupError, Entry, EntryKind, Manifest, MasterBytes, StateCheck,
    StateError, FORMAT, FORMAT_VERSION, MANIFEST_NAME,
};

/// Top-level directories left out, and why.
const LEFT_OUT_DIRS: &[(&str, &str)] = &[
    (
        "keys",
        "session-key tmpfs mounts: the keys are sealed in sealed-keys, a copy here would be plaintext",
    ),
    ("runsc", "runtime state of running sandboxes"),
    ("bundles", "per-launch OCI bundles, rebuilt at launch"),
    ("images", "verified-image cache, rebuilt from the image at start"),
];
/// Transient names: rollback journals (a database is only copied without one), and
/// the staging files of atomic writes (with [`ironclaw_hostfs::is_temp_name`], at the
/// top level only).
const LEFT_OUT_SUFFIXES: &[&str] = &["-journal", ".tmp", ".next", ".new", ".partial", ".sock.d"];
/// Top-level files copied after the walk, in this order (see the module docs).
const AUDIT: &str = "audit.jsonl";
const SEALED: &str = "sealed-keys";
const MASTER: &str = "master.key";

/// How many times a database copy is retried while commits keep overlapping it.
const DB_ATTEMPTS: u32 = 200;
/// How many times the key pair is re-read while a master rotation is in flight.
const KEY_ATTEMPTS: u32 = 50;
/// How deep the walk goes (one open directory per level). Far below the fd limit and
/// the stack; the host's own trees are a few levels deep, so only an agent's
/// workspace can reach it, and what is below is left out.
const MAX_DEPTH: usize = 64;
/// The default largest file copied from an agent-writable tree (a workspace, a
/// session's outbound or heartbeat directory); bigger ones (sparse ones included:
/// the apparent size counts) are left out. `IRONCTL_BACKUP_MAX_FILE_BYTES` overrides it.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 1 << 30;
const MAX_FILE_ENV: &str = "IRONCTL_BACKUP_MAX_FILE_BYTES";

pub struct BackupOptions {
    pub state_dir: PathBuf,
    pub out: PathBuf,
    pub include_master_key: bool,
}

/// What a finished backup holds.
#[derive(Debug, Serialize)]
pub struct BackupReport {
    pub out: PathBuf,
    pub bytes: u64,
    pub entries: usize,
    pub master_key_included: bool,
    pub master_key_fingerprint: String,
    pub check: StateCheck,
    /// What was deliberately not copied, and why.
    pub left_out: Vec<String>,
}

/// Backs up `opts.state_dir` into the new file `opts.out`.
pub fn backup(opts: &BackupOptions) -> Result<BackupReport, BackupError> {
    let max_file_bytes = match std::env::var(MAX_FILE_ENV) {
        Ok(v) if !v.is_empty() => v.parse::<u64>().map_err(|e| {
            BackupError::Refused(format!("{MAX_FILE_ENV}={v}: not a byte count: {e}"))
        })?,
        _ => DEFAULT_MAX_FILE_BYTES,
    };
    backup_limited(opts, max_file_bytes)
}

fn backup_limited(opts: &BackupOptions, max_file_bytes: u64) -> Result<BackupReport, BackupError> {
    let state_dir = std::fs::canonicalize(&opts.state_dir).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            BackupError::Refused(format!(
                "no state directory at {} (set --state-dir)",
                opts.state_dir.display()
            ))
        } else {
            BackupError::io(&opts.state_dir, "resolve")(e)
        }
    })?;
    let root_meta = std::fs::metadata(&state_dir).map_err(BackupError::io(&state_dir, "stat"))?;
    if !root_meta.is_dir() {
        return Err(BackupError::Refused(format!(
            "{} is not a directory",
            state_dir.display()
        )));
    }
    if std::fs::symlink_metadata(&opts.out).is_ok() {
        return Err(BackupError::Refused(format!(
            "{} exists; a backup never overwrites a file",
            opts.out.display()
        )));
    }
    // The archive inside the directory it copies would copy its own staging area.
    let out_dir = match opts.out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    if std::fs::canonicalize(&out_dir).is_ok_and(|d| d.starts_with(&state_dir)) {
        return Err(BackupError::Refused(format!(
            "--out {} is inside the state directory {}; write the backup elsewhere",
            opts.out.display(),
            state_dir.display()
        )));
    }
    let staging = Staging::create(&opts.out)?;
    let root = Dir::open(&state_dir).map_err(BackupError::io(&state_dir, "open"))?;

    let mut walk = Walk {
        staging: staging.path.clone(),
        entries: Vec::new(),
        left_out: Vec::new(),
        max_file_bytes,
    };
    walk.dir(&root, Path::new(""), 0)?;
    walk.entries
        .push(copy_audit(&root, &state_dir, &staging.path)?);
    let (master, key_entries) =
        copy_keys(&root, &state_dir, &staging.path, opts.include_master_key)?;
    walk.entries.extend(key_entries);

    let layout = HostLayout::new(&state_dir);
    let check = loop {
        match verify_state(&staging.path, &master) {
            Ok(c) => break c,
            Err(StateError::Other(e)) => return Err(e),
            // A session that ended during the walk: its key was destroyed after its
            // files were copied. Its data is unreadable by design; leave it out.
            Err(StateError::MissingKey(id)) if !layout.session_dir(&id).exists() => {
                let dir = format!("sessions/{id}");
                std::fs::remove_dir_all(staging.path.join(&dir))
                    .map_err(BackupError::io(&staging.path, "remove ended session"))?;
                walk.entries
                    .retain(|e| e.path != dir && !e.path.starts_with(&format!("{dir}/")));
                walk.left_out
                    .push(format!("{dir}/ (the session ended during the backup)"));
            }
            Err(StateError::MissingKey(id)) => {
                return Err(BackupError::Verify(format!(
                    "session {id} has queue files but its key is not in sealed-keys"
                )))
            }
            // A database a sandbox writes that does not check out (a corrupt or
            // tampered outbound queue): the sandbox can do that to its own queue, and
            // must not be able to stop every backup with it. Left out, loudly.
            Err(StateError::Sandbox { path, reason }) => {
                let rel = path
                    .strip_prefix(&staging.path)
                    .map_err(|_| BackupError::Verify(format!("{}: {reason}", path.display())))?
                    .to_str()
                    .map(str::to_owned)
                    .ok_or_else(|| BackupError::Verify(format!("{}: {reason}", path.display())))?;
                if !walk.entries.iter().any(|e| e.path == rel) {
                    return Err(BackupError::Verify(format!("{rel}: {reason}")));
                }
                // A directory in the queue's place is left out whole.
                if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                }
                .map_err(BackupError::io(
                    &path,
                    "remove a copy that failed to verify",
                ))?;
                let under = format!("{rel}/");
                walk.entries
                    .retain(|e| e.path != rel && !e.path.starts_with(&under));
                walk.leave_out_sandbox(format!("{rel} (does not verify: {reason})"));
            }
        }
    };

    for e in walk
        .entries
        .iter_mut()
        .filter(|e| e.kind == EntryKind::File)
    {
        let (size, sha) = if opts.include_master_key && e.path == MASTER {
            hash_bytes(master.as_slice())
        } else {
            hash_file(&staging.path.join(&e.path))?
        };
        e.size = Some(size);
        e.sha256 = Some(sha);
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        version: FORMAT_VERSION,
        created_at: Timestamp::now().to_canonical(),
        created_by: format!("ironctl {}", env!("CARGO_PKG_VERSION")),
        source_state_dir: state_dir.display().to_string(),
        root_mode: root_meta.mode() & 0o7777,
        root_uid: root_meta.uid(),
        root_gid: root_meta.gid(),
        master_key_included: opts.include_master_key,
        master_key_fingerprint: master.fingerprint(),
        audit: AuditAnchor {
            records: check.audit_records,
            last_seq: check.audit_last_seq,
            last_hash: check.audit_last_hash.clone(),
        },
        entries: walk.entries,
        left_out: walk.left_out.clone(),
    };
    let master_file = opts.include_master_key.then(|| master.as_slice());
    let bytes = write_archive(&opts.out, &staging.path, &manifest, master_file)?;
    Ok(BackupReport {
        out: opts.out.clone(),
        bytes,
        entries: manifest.entries.len(),
        master_key_included: manifest.master_key_included,
        master_key_fingerprint: manifest.master_key_fingerprint,
        check,
        left_out: walk.left_out,
    })
}

/// The private directory the copy is assembled in, next to the output (same file
/// system, so nothing big crosses devices twice); removed when dropped. Created 0700
/// (everything in it 0600 / 0700): it holds plaintext workspace files and the audit
/// log while the backup runs, and a SIGKILL leaves it behind. The master key is never
/// written here: it goes into the archive from memory.
struct Staging {
    path: PathBuf,
}

impl Staging {
    fn create(out: &Path) -> Result<Staging, BackupError> {
        let name = out.file_name().ok_or_else(|| {
            BackupError::Refused(format!("--out {}: needs a file name", out.display()))
        })?;
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let mut staged = OsStr::new(".").to_owned();
        staged.push(name);
        staged.push(format!(".staging-{}", std::process::id()));
        let path = parent.join(staged);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(BackupError::io(&path, "create staging directory"))?;
        Ok(Staging { path })
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

struct Walk {
    staging: PathBuf,
    entries: Vec<Entry>,
    left_out: Vec<String>,
    /// The size limit for files in agent-writable trees.
    max_file_bytes: u64,
}

/// Whether `rel` is in (or is) a tree a sandbox writes: a group's workspace, a
/// session's outbound queue directory, its heartbeat directory. What is in them is the
/// agent's to make: it is copied, but nothing in it may stop a backup.
fn sandbox_tree(rel: &Path) -> bool {
    let c: Vec<&OsStr> = rel.iter().collect();
    match c.as_slice() {
        [s, _, d, ..] => {
            (*s == "sessions" && (*d == "outbound" || *d == "heartbeat"))
                || (*s == "groups" && *d == "workspace")
        }
        _ => false,
    }
}

/// Who writes a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DbKind {
    /// The registry, the change store, a session's inbound queue: must verify.
    Host,
    /// A session's outbound queue, written by its sandbox.
    Sandbox,
}

/// Which files are databases (copied by the commit-consistent protocol and verified
/// under their keys). Anything else named `*.db` — an agent's workspace file — is a
/// plain file.
fn db_kind(rel: &Path) -> Option<DbKind> {
    let c: Vec<&str> = rel.iter().map(|s| s.to_str().unwrap_or("")).collect();
    match c.as_slice() {
        ["registry.db"] | ["changes.db"] => Some(DbKind::Host),
        ["sessions", _, "inbound", n] if n.ends_with(".db") => Some(DbKind::Host),
        ["sessions", _, "outbound", n] if n.ends_with(".db") => Some(DbKind::Sandbox),
        _ => None,
    }
}

/// Whether a copy failed because of what a sandbox did to its own file (kept
/// committing, kept a journal, swapped the file for a symlink or FIFO).
fn sandbox_made(e: &BackupError) -> bool {
    match e {
        BackupError::Unstable { .. } => true,
        BackupError::Io { source, .. } => fsx::not_a_file(source),
        _ => false,
    }
}

/// Why a top-level directory is left out, if it is.
fn left_out_dir(top: bool, name: &str) -> Option<&'static str> {
    LEFT_OUT_DIRS
        .iter()
        .find(|(d, _)| top && *d == name)
        .map(|(_, why)| *why)
}

fn left_out_by_name(top: bool, name: &str) -> bool {
    left_out_dir(top, name).is_some()
        || LEFT_OUT_SUFFIXES.iter().any(|s| name.ends_with(s))
        // The temporary file of a write in flight (the token file, the key store) or of
        // one a crash interrupted: never read back. Every host file written through
        // ironclaw-hostfs in the state dir is at its top level (the image cache, which
        // has some too, is left out whole); below it, such a name is someone else's
        // file, an agent's in its workspace say, and is copied like any other.
        || (top && ironclaw_hostfs::is_temp_name(OsStr::new(name)))
}

/// `NotFound` while walking: the thing went away between listing and opening (a
/// session ended, an agent deleted a file). Not an error; it is simply not copied.
fn vanished(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}

fn entry(path: String, kind: EntryKind, meta: &std::fs::Metadata) -> Entry {
    Entry {
        path,
        kind,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        size: None,
        sha256: None,
        target: None,
    }
}

impl Walk {
    /// Leaves out something a sandbox made, with a warning on stderr (the report lists
    /// it too, and so does the manifest).
    fn leave_out_sandbox(&mut self, what: String) {
        eprintln!("warning: backup: left out agent-written {what}");
        self.left_out.push(what);
    }

    /// Copies everything under `dir` (at `rel` in the state dir, `depth` levels down),
    /// depth first, parents before children.
    fn dir(&mut self, dir: &Dir, rel: &Path, depth: usize) -> Result<(), BackupError> {
        let at = |name: &OsStr| self.staging.join(rel).join(name);
        let names = dir
            .names()
            .map_err(BackupError::io(&at(OsStr::new("")), "list"))?;
        let top = rel.as_os_str().is_empty();
        for name in names {
            let rel_child = rel.join(&name);
            let Some(text) = rel_child.to_str().map(str::to_owned) else {
                self.left_out.push(format!(
                    "{} (not a UTF-8 name)",
                    rel_child.to_string_lossy()
                ));
                continue;
            };
            let name_text = name.to_string_lossy();
            if let Some(why) = left_out_dir(top, &name_text) {
                self.left_out.push(format!("{text}/ ({why})"));
                continue;
            }
            if left_out_by_name(top, &name_text) {
                continue;
            }
            if top && [AUDIT, SEALED, MASTER].contains(&name_text.as_ref()) {
                continue;
            }
            let dest = self.staging.join(&rel_child);
            let meta = match dir.lstat(&name) {
                Ok(m) => m,
                Err(e) if vanished(&e) => continue,
                Err(e) => return Err(BackupError::io(&rel_child, "stat")(e)),
            };
            let ft = meta.file_type();
            let sandbox = sandbox_tree(&rel_child);
            if ft.is_dir() {
                if depth + 1 >= MAX_DEPTH {
                    let why = format!("{text}/ (deeper than {MAX_DEPTH} levels)");
                    if sandbox {
                        self.leave_out_sandbox(why);
                    } else {
                        self.left_out.push(why);
                    }
                    continue;
                }
                let sub = match dir.dir(&name) {
                    Ok(d) => d,
                    Err(e) if vanished(&e) => continue,
                    // Swapped for a symlink or a file since the listing (an agent's
                    // workspace): not followed, not fatal.
                    Err(e)
                        if e.raw_os_error() == Some(libc::ELOOP)
                            || e.raw_os_error() == Some(libc::ENOTDIR) =>
                    {
                        self.left_out
                            .push(format!("{text}/ (stopped being a directory while read)"));
                        continue;
                    }
                    Err(e) => return Err(BackupError::io(&rel_child, "open directory")(e)),
                };
                std::fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&dest)
                    .map_err(BackupError::io(&dest, "create"))?;
                self.entries.push(entry(text, EntryKind::Dir, &meta));
                self.dir(&sub, &rel_child, depth + 1)?;
            } else if ft.is_symlink() {
                // A queue database is never a symlink: restore would follow it. In an
                // outbound directory the sandbox made it; anywhere else it is tampering
                // with host state.
                match db_kind(&rel_child) {
                    Some(DbKind::Sandbox) => {
                        self.leave_out_sandbox(format!(
                            "{text} (a symlink where the outbound queue belongs)"
                        ));
                        continue;
                    }
                    Some(DbKind::Host) => {
                        return Err(BackupError::Verify(format!(
                            "{text} is a symlink, not a database"
                        )))
                    }
                    None => {}
                }
                let target = match dir.read_link(&name) {
                    Ok(t) => t,
                    Err(e) if vanished(&e) => continue,
                    Err(e) => return Err(BackupError::io(&rel_child, "read link")(e)),
                };
                let Some(target) = target.to_str().map(str::to_owned) else {
                    self.left_out
                        .push(format!("{text} (a symlink to a non-UTF-8 name)"));
                    continue;
                };
                let mut e = entry(text, EntryKind::Symlink, &meta);
                e.target = Some(target);
                self.entries.push(e);
            } else if ft.is_file() {
                let limit = sandbox.then_some(self.max_file_bytes);
                let too_big = |len: u64| {
                    format!(
                        "{text} ({len} bytes or more; agent-written files over {} bytes are not copied, see {MAX_FILE_ENV})",
                        self.max_file_bytes
                    )
                };
                if limit.is_some_and(|l| meta.len() > l) {
                    let why = too_big(meta.len());
                    self.leave_out_sandbox(why);
                    continue;
                }
                let db = db_kind(&rel_child);
                let copied = if db.is_some() {
                    snapshot_db(dir, &name, &rel_child, &dest, DB_ATTEMPTS).map(|()| true)
                } else {
                    copy_file(dir, &name, &dest, limit).map_err(BackupError::io(&rel_child, "copy"))
                };
                match copied {
                    Ok(true) => self.entries.push(entry(text, EntryKind::File, &meta)),
                    // Grew past the limit while it was copied.
                    Ok(false) => {
                        let _ = std::fs::remove_file(&dest);
                        let why = too_big(limit.unwrap_or(0) + 1);
                        self.leave_out_sandbox(why);
                    }
                    Err(BackupError::Io { source, .. }) if vanished(&source) => {
                        let _ = std::fs::remove_file(&dest);
                    }
                    // Whatever a sandbox does to its own files (a journal kept present,
                    // commits that never stop, a file swapped for a symlink or FIFO) must
                    // not be able to stop backups: left out, with a warning.
                    Err(e) if sandbox && sandbox_made(&e) => {
                        let _ = std::fs::remove_file(&dest);
                        self.leave_out_sandbox(format!("{text} ({e})"));
                    }
                    Err(BackupError::Io { source, .. })
                        if db.is_none() && fsx::not_a_file(&source) =>
                    {
                        let _ = std::fs::remove_file(&dest);
                        self.left_out
                            .push(format!("{text} (stopped being a regular file while read)"));
                    }
                    // A host database that does not copy cleanly fails the backup.
                    Err(e) => return Err(e),
                }
            } else if !std::os::unix::fs::FileTypeExt::is_socket(&ft) {
                // Sockets are the daemon's listeners, recreated at launch: never data.
                self.left_out.push(format!("{text} (a FIFO or device)"));
            }
        }
        Ok(())
    }
}

fn create_private(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// Copies a plain file; with a `limit`, stops past it and returns `false` (the file
/// grew over the limit while it was read).
fn copy_file(dir: &Dir, name: &OsStr, dest: &Path, limit: Option<u64>) -> io::Result<bool> {
    let src = dir.file(name)?;
    let mut out = create_private(dest)?;
    match limit {
        Some(l) => Ok(io::copy(&mut (&src).take(l.saturating_add(1)), &mut out)? <= l),
        None => {
            io::copy(&mut &src, &mut out)?;
            Ok(true)
        }
    }
}

fn pause(attempt: u32) {
    if attempt > 0 {
        // 1, 2, 4, … 32 ms: commits are short, so a busy file is retried soon and a
        // stuck one is given up on within seconds.
        std::thread::sleep(Duration::from_millis(1u64 << attempt.min(5)));
    }
}

/// What identifies one committed state of a database file: every commit in
/// `journal_mode=DELETE` rewrites page 1, which SQLCipher re-encrypts with a fresh IV,
/// so its bytes change on every commit; a replaced file changes identity.
#[derive(PartialEq, Eq)]
struct Fingerprint {
    dev: u64,
    ino: u64,
    len: u64,
    page1: Vec<u8>,
}

fn fingerprint(dir: &Dir, name: &OsStr) -> io::Result<Fingerprint> {
    let f = dir.file(name)?;
    let meta = f.metadata()?;
    let mut page1 = Vec::with_capacity(4096);
    (&f).take(4096).read_to_end(&mut page1)?;
    Ok(Fingerprint {
        dev: meta.dev(),
        ino: meta.ino(),
        len: meta.len(),
        page1,
    })
}

fn journal_exists(dir: &Dir, name: &OsStr) -> io::Result<bool> {
    let mut j = name.to_owned();
    j.push("-journal");
    match dir.lstat(&j) {
        Ok(_) => Ok(true),
        Err(e) if vanished(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Copies a database only as a committed state: no journal before or after the copy,
/// and the file's identity, length and page 1 unchanged across it (the contract's
/// lock-free read protocol, applied to the raw file; no key is needed).
fn snapshot_db(
    dir: &Dir,
    name: &OsStr,
    rel: &Path,
    dest: &Path,
    attempts: u32,
) -> Result<(), BackupError> {
    let io = |op| BackupError::io(rel, op);
    let mut last = String::from("no attempt made");
    for attempt in 0..attempts {
        pause(attempt);
        let before = fingerprint(dir, name).map_err(io("read"))?;
        if journal_exists(dir, name).map_err(io("stat journal"))? {
            last = "a commit was in progress (journal present)".into();
            continue;
        }
        let mut src = dir.file(name).map_err(io("open"))?;
        let mut out = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(dest)
            .map_err(BackupError::io(dest, "create"))?;
        let copied = io::copy(&mut src, &mut out).map_err(io("copy"))?;
        let journal = journal_exists(dir, name).map_err(io("stat journal"))?;
        let after = fingerprint(dir, name).map_err(io("read"))?;
        if !journal && after == before && copied == before.len {
            return Ok(());
        }
        last = "a commit overlapped the copy".into();
    }
    Err(BackupError::Unstable {
        path: rel.to_owned(),
        attempts,
        last,
    })
}

/// Copies the audit log as it is now, cut after its last complete record (an append in
/// progress is not part of the chain yet).
fn copy_audit(root: &Dir, state_dir: &Path, staging: &Path) -> Result<Entry, BackupError> {
    let live = state_dir.join(AUDIT);
    let src = root.file(OsStr::new(AUDIT)).map_err(|e| {
        if vanished(&e) {
            BackupError::Refused(format!(
                "{} does not exist: is {} an IronClaw state directory?",
                live.display(),
                state_dir.display()
            ))
        } else {
            BackupError::io(&live, "open")(e)
        }
    })?;
    let meta = src.metadata().map_err(BackupError::io(&live, "stat"))?;
    let dest = staging.join(AUDIT);
    let mut out = create_private(&dest).map_err(BackupError::io(&dest, "create"))?;
    let mut reader = (&src).take(meta.len());
    let mut buf = vec![0u8; 64 * 1024];
    let (mut written, mut complete) = (0u64, 0u64);
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(BackupError::io(&live, "read"))?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])
            .map_err(BackupError::io(&dest, "write"))?;
        if let Some(i) = buf[..n].iter().rposition(|b| *b == b'\n') {
            complete = written + i as u64 + 1;
        }
        written += n as u64;
    }
    out.set_len(complete)
        .map_err(BackupError::io(&dest, "truncate"))?;
    Ok(entry(AUDIT.into(), EntryKind::File, &meta))
}

fn read_whole(dir: &Dir, name: &str) -> io::Result<Option<(Vec<u8>, std::fs::Metadata)>> {
    let f = match dir.file(OsStr::new(name)) {
        Ok(f) => f,
        Err(e) if vanished(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = f.metadata()?;
    let mut bytes = Vec::new();
    (&f).take(64 << 20).read_to_end(&mut bytes)?;
    Ok(Some((bytes, meta)))
}

/// Copies `sealed-keys` and reads `master.key` until the two agree: a master rotation
/// replaces them one after the other, and a pair from either side of it is fine, a
/// mixed one is not. The master key is never written to staging: it is returned, to
/// verify the copy with and (if archived) to append to the archive from memory; its
/// entry is in the list when it is to be archived.
fn copy_keys(
    root: &Dir,
    state_dir: &Path,
    staging: &Path,
    include_master: bool,
) -> Result<(MasterBytes, Vec<Entry>), BackupError> {
    let live_master = state_dir.join(MASTER);
    let live_sealed = state_dir.join(SEALED);
    let staged_sealed = staging.join(SEALED);
    let mut last = String::from("no attempt made");
    for attempt in 0..KEY_ATTEMPTS {
        pause(attempt);
        let sealed = read_whole(root, SEALED).map_err(BackupError::io(&live_sealed, "read"))?;
        let Some((master_bytes, master_meta)) =
            read_whole(root, MASTER).map_err(BackupError::io(&live_master, "read"))?
        else {
            return Err(BackupError::Refused(format!(
                "{} does not exist; without it nothing in {} can be read",
                live_master.display(),
                state_dir.display()
            )));
        };
        let master_bytes = zeroize::Zeroizing::new(master_bytes);
        if master_meta.mode() & 0o077 != 0 {
            return Err(BackupError::Refused(format!(
                "{} is readable by group or others: chmod 600 {} (and consider the key exposed)",
                live_master.display(),
                live_master.display()
            )));
        }
        let master = MasterBytes::from_slice(&live_master, &master_bytes)?;
        let again = read_whole(root, SEALED).map_err(BackupError::io(&live_sealed, "read"))?;
        if sealed.as_ref().map(|s| &s.0) != again.as_ref().map(|s| &s.0) {
            last = "sealed-keys changed while it was read".into();
            continue;
        }
        let _ = std::fs::remove_file(&staged_sealed);
        if let Some((bytes, _)) = &sealed {
            let mut f = create_private(&staged_sealed)
                .map_err(BackupError::io(&staged_sealed, "create"))?;
            f.write_all(bytes)
                .map_err(BackupError::io(&staged_sealed, "write"))?;
        }
        match KeyCustodian::open(&staged_sealed, master.key()) {
            Ok(_) => {}
            Err(e @ KeyError::WrongMaster { .. }) => {
                last = format!("a master rotation was in flight: {e}");
                continue;
            }
            Err(e) => return Err(e.into()),
        }
        let mut entries = Vec::new();
        if let Some((_, meta)) = &sealed {
            entries.push(entry(SEALED.into(), EntryKind::File, meta));
        }
        if include_master {
            entries.push(entry(MASTER.into(), EntryKind::File, &master_meta));
        }
        return Ok((master, entries));
    }
    Err(BackupError::Unstable {
        path: live_sealed,
        attempts: KEY_ATTEMPTS,
        last,
    })
}

fn hash_bytes(bytes: &[u8]) -> (u64, String) {
    (
        bytes.len() as u64,
        ironclaw_contract::hex::encode(&Sha256::digest(bytes)),
    )
}

fn hash_file(path: &Path) -> Result<(u64, String), BackupError> {
    let mut f = File::open(path).map_err(BackupError::io(path, "open"))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut n = 0u64;
    loop {
        let got = f.read(&mut buf).map_err(BackupError::io(path, "read"))?;
        if got == 0 {
            break;
        }
        h.update(&buf[..got]);
        n += got as u64;
    }
    Ok((n, ironclaw_contract::hex::encode(&h.finalize())))
}

/// Writes the tar to `<out>.partial` (created 0600, never over an existing file),
/// syncs it, and links it to `out`, which must not exist: a crash leaves no file that
/// looks like a finished backup. `master`: the master key's bytes, archived as
/// `master.key` straight from memory.
fn write_archive(
    out: &Path,
    staging: &Path,
    manifest: &Manifest,
    master: Option<&[u8]>,
) -> Result<u64, BackupError> {
    let mut partial = out.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let file = create_private(&partial).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            BackupError::Refused(format!(
                "{} exists (left by an interrupted backup?); remove it and retry",
                partial.display()
            ))
        } else {
            BackupError::io(&partial, "create")(e)
        }
    })?;
    struct RemoveOnDrop<'a>(&'a Path);
    impl Drop for RemoveOnDrop<'_> {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(self.0);
        }
    }
    let _cleanup = RemoveOnDrop(&partial);
    let io_err = |op| BackupError::io(&partial, op);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let header = |kind: tar::EntryType, mode: u32, uid: u32, gid: u32, size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(u64::from(uid));
        h.set_gid(u64::from(gid));
        h.set_mtime(now);
        h.set_size(size);
        h
    };
    let mut b = tar::Builder::new(BufWriter::new(file));
    b.follow_symlinks(false);
    let json = serde_json::to_vec_pretty(manifest)
        .map_err(|e| BackupError::Verify(format!("manifest: {e}")))?;
    let mut h = header(tar::EntryType::Regular, 0o600, 0, 0, json.len() as u64);
    b.append_data(&mut h, MANIFEST_NAME, json.as_slice())
        .map_err(io_err("write"))?;
    for e in &manifest.entries {
        match e.kind {
            EntryKind::Dir => {
                let mut h = header(tar::EntryType::Directory, e.mode, e.uid, e.gid, 0);
                b.append_data(&mut h, &e.path, io::empty())
                    .map_err(io_err("write"))?;
            }
            EntryKind::File => {
                let mut h = header(
                    tar::EntryType::Regular,
                    e.mode,
                    e.uid,
                    e.gid,
                    e.size.unwrap_or(0),
                );
                match master.filter(|_| e.path == MASTER) {
                    Some(key) => b.append_data(&mut h, &e.path, key),
                    None => {
                        let staged = staging.join(&e.path);
                        let f = File::open(&staged).map_err(BackupError::io(&staged, "open"))?;
                        b.append_data(&mut h, &e.path, f)
                    }
                }
                .map_err(io_err("write"))?;
            }
            EntryKind::Symlink => {
                let mut h = header(tar::EntryType::Symlink, e.mode, e.uid, e.gid, 0);
                b.append_link(&mut h, &e.path, e.target.as_deref().unwrap_or(""))
                    .map_err(io_err("write"))?;
            }
        }
    }
    let file = b
        .into_inner()
        .map_err(io_err("finish"))?
        .into_inner()
        .map_err(|e| io_err("flush")(e.into_error()))?;
    file.sync_all().map_err(io_err("fsync"))?;
    let bytes = file.metadata().map_err(io_err("stat"))?.len();
    std::fs::hard_link(&partial, out).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            BackupError::Refused(format!(
                "{} appeared while the backup ran; it was not overwritten",
                out.display()
            ))
        } else {
            BackupError::io(out, "link into place")(e)
        }
    })?;
    if let Some(dir) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use ironclaw_contract::db::{open_writer, read_snapshot, Cipher, SnapshotPolicy};
    use ironclaw_contract::ids::SessionId;
    use ironclaw_contract::key::SessionKey;
    use ironclaw_contract::schema::{FileKind, QueueFile};

    use super::*;

    static KIND: FileKind = FileKind {
        name: "backup-test",
        version: 1,
        application_id: 0x4943_5454,
        ddl: "CREATE TABLE t (n INTEGER NOT NULL, pad BLOB NOT NULL) STRICT;",
    };

    /// A writer commits as fast as it can (growing and rewriting pages) while the
    /// database is copied again and again: every copy kept must open under the key,
    /// pass the integrity checks and hold a prefix of the writer's rows.
    #[test]
    fn copies_of_a_database_under_constant_commits_are_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let db = root.join("busy.db");
        let cipher = Cipher::Key(SessionKey::from_bytes([7; 32]));
        let conn = open_writer(&db, &cipher, &KIND).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut n = 0i64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    conn.execute("INSERT INTO t (n, pad) VALUES (?1, randomblob(1500))", [n])
                        .unwrap();
                    if n % 7 == 0 {
                        conn.execute("DELETE FROM t WHERE n % 5 = 0", []).unwrap();
                    }
                }
                n
            })
        };
        let dir = Dir::open(&root).unwrap();
        let mut last = 0i64;
        for i in 0..25 {
            let dest = root.join(format!("copy-{i}.db"));
            snapshot_db(
                &dir,
                OsStr::new("busy.db"),
                Path::new("busy.db"),
                &dest,
                DB_ATTEMPTS,
            )
            .unwrap();
            super::super::check_db(&dest, &cipher, &KIND).unwrap();
            let max: i64 = read_snapshot(&dest, &cipher, &KIND, SnapshotPolicy::default(), |c| {
                c.query_row("SELECT COALESCE(MAX(n), 0) FROM t", [], |r| r.get(0))
            })
            .unwrap();
            assert!(max >= last, "copy {i} went back in time: {max} < {last}");
            last = max;
            std::fs::remove_file(&dest).unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        let written = writer.join().unwrap();
        assert!(written > 25, "the writer barely ran ({written} commits)");
    }

    #[test]
    fn a_hot_journal_is_never_copied_past() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        std::fs::write(root.join("x.db"), b"not really a database").unwrap();
        std::fs::write(root.join("x.db-journal"), b"a commit in progress").unwrap();
        let dir = Dir::open(&root).unwrap();
        let e = snapshot_db(
            &dir,
            OsStr::new("x.db"),
            Path::new("x.db"),
            &root.join("c"),
            3,
        )
        .unwrap_err();
        assert!(matches!(e, BackupError::Unstable { .. }), "{e}");
    }

    /// A minimal state dir (key pair with a key for `ses_1` and `ses_2`, an empty audit
    /// log) and a separate directory for the archive.
    fn state() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().canonicalize().unwrap();
        let root = base.join("state");
        std::fs::create_dir(&root).unwrap();
        std::fs::create_dir(base.join("out")).unwrap();
        let layout = HostLayout::new(&root);
        let (keys, _) = KeyCustodian::load(&layout.master_key(), &layout.sealed_keys()).unwrap();
        for s in ["ses_1", "ses_2", "ses_3"] {
            keys.get_or_create(&SessionId::new(s).unwrap()).unwrap();
        }
        std::fs::write(layout.audit_log(), b"").unwrap();
        (tmp, root, base.join("out/b.tar"))
    }

    fn opts(root: &Path, out: &Path) -> BackupOptions {
        BackupOptions {
            state_dir: root.to_owned(),
            out: out.to_owned(),
            include_master_key: true,
        }
    }

    fn write(root: &Path, rel: &str, bytes: &[u8]) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }

    fn valid_outbound(path: &Path, root: &Path, session: &str) {
        let layout = HostLayout::new(root);
        let (keys, _) = KeyCustodian::load(&layout.master_key(), &layout.sealed_keys()).unwrap();
        let key = keys
            .get(&SessionId::new(session).unwrap())
            .unwrap()
            .unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        drop(open_writer(path, &Cipher::Key(key), QueueFile::Outbound).unwrap());
    }

    fn archived(out: &Path) -> Manifest {
        let mut a = tar::Archive::new(File::open(out).unwrap());
        let mut first = a.entries().unwrap().next().unwrap().unwrap();
        let mut json = Vec::new();
        first.read_to_end(&mut json).unwrap();
        serde_json::from_slice(&json).unwrap()
    }

    #[test]
    fn a_workspace_file_named_db_is_a_plain_file() {
        let (_tmp, root, out) = state();
        write(&root, "groups/g1/workspace/x.db", b"an agent's file");
        write(
            &root,
            "groups/g1/workspace/x.db-journal",
            b"forever present",
        );
        let r = backup(&opts(&root, &out)).unwrap();
        let m = archived(&out);
        assert!(m
            .entries
            .iter()
            .any(|e| e.path == "groups/g1/workspace/x.db" && e.kind == EntryKind::File));
        assert!(r.left_out.is_empty(), "{:?}", r.left_out);
    }

    #[test]
    fn a_broken_or_busy_outbound_queue_is_left_out_not_fatal() {
        let (_tmp, root, out) = state();
        // Corrupt: copies, but does not verify.
        write(&root, "sessions/ses_1/outbound/outbound.db", b"garbage");
        // A journal kept present: never copies.
        valid_outbound(
            &root.join("sessions/ses_2/outbound/outbound.db"),
            &root,
            "ses_2",
        );
        write(
            &root,
            "sessions/ses_2/outbound/outbound.db-journal",
            b"held",
        );
        // A directory in its place.
        write(&root, "sessions/ses_3/outbound/outbound.db/x", b"x");
        let r = backup(&opts(&root, &out)).unwrap();
        for p in [
            "sessions/ses_1/outbound/outbound.db",
            "sessions/ses_2/outbound/outbound.db",
            "sessions/ses_3/outbound/outbound.db",
        ] {
            assert!(
                r.left_out.iter().any(|l| l.starts_with(p)),
                "{p}: {:?}",
                r.left_out
            );
            let m = archived(&out);
            assert!(!m.entries.iter().any(|e| e.path.starts_with(p)));
            assert!(m.left_out.iter().any(|l| l.starts_with(p)));
        }
    }

    /// The daemon opens its databases with `host_file_key` and backup checks them with
    /// `existing_host_file_key`: one API, so the two cannot disagree on a key's name.
    #[test]
    fn the_host_databases_verify_under_the_keys_the_daemon_opens_them_with() {
        use ironclaw_keys::HostFile;

        let (_tmp, root, out) = state();
        let layout = HostLayout::new(&root);
        let (keys, _) = KeyCustodian::load(&layout.master_key(), &layout.sealed_keys()).unwrap();
        let key = |f| Cipher::Key(keys.host_file_key(f).unwrap());
        drop(
            ironclaw_registry::Registry::open(&layout.registry_db(), &key(HostFile::Registry))
                .unwrap(),
        );
        drop(
            ironclaw_gateway::ChangeStore::open(&layout.changes_db(), &key(HostFile::ChangeStore))
                .unwrap(),
        );
        drop(keys);
        let r = backup(&opts(&root, &out)).unwrap();
        assert_eq!(r.check.databases, 2);

        // A host database whose key is not in the store is named with the missing key.
        let (_tmp, root, out) = state();
        let layout = HostLayout::new(&root);
        drop(
            ironclaw_registry::Registry::open(
                &layout.registry_db(),
                &Cipher::Key(SessionKey::from_bytes([9; 32])),
            )
            .unwrap(),
        );
        let e = backup(&opts(&root, &out)).unwrap_err().to_string();
        assert!(
            e.contains("its key (host-registry-db) is not in sealed-keys"),
            "{e}"
        );
        assert!(!out.exists());
    }

    #[test]
    fn a_host_database_that_does_not_verify_fails_the_backup() {
        let (_tmp, root, out) = state();
        write(&root, "registry.db", b"garbage");
        assert!(backup(&opts(&root, &out)).is_err());
        assert!(!out.exists());
        let (_tmp, root, out) = state();
        write(&root, "sessions/ses_1/inbound/inbound.db", b"garbage");
        assert!(backup(&opts(&root, &out)).is_err());
    }

    #[test]
    fn a_symlinked_outbound_queue_is_left_out() {
        let (tmp, root, out) = state();
        // The symlink points at a database that verifies: followed, it would pass.
        let elsewhere = tmp.path().join("elsewhere/outbound.db");
        valid_outbound(&elsewhere, &root, "ses_1");
        let link = root.join("sessions/ses_1/outbound/outbound.db");
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
        let r = backup(&opts(&root, &out)).unwrap();
        let m = archived(&out);
        assert!(!m
            .entries
            .iter()
            .any(|e| e.path == "sessions/ses_1/outbound/outbound.db"));
        assert!(r
            .left_out
            .iter()
            .any(|l| l.starts_with("sessions/ses_1/outbound/outbound.db")));
    }

    #[test]
    fn verify_never_follows_a_symlinked_queue() {
        let (tmp, root, _out) = state();
        let elsewhere = tmp.path().join("elsewhere/outbound.db");
        valid_outbound(&elsewhere, &root, "ses_1");
        let link = root.join("sessions/ses_1/outbound/outbound.db");
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
        let master = MasterBytes::from_slice(
            &root.join(MASTER),
            &std::fs::read(root.join(MASTER)).unwrap(),
        )
        .unwrap();
        assert!(verify_state(&root, &master).is_err());
        // The same database as a regular file verifies.
        std::fs::remove_file(&link).unwrap();
        std::fs::copy(&elsewhere, &link).unwrap();
        assert!(verify_state(&root, &master).is_ok());
    }

    #[test]
    fn the_walk_stops_at_the_depth_limit() {
        let (_tmp, root, out) = state();
        let mut deep = String::from("groups/g1/workspace");
        for _ in 0..MAX_DEPTH + 10 {
            deep.push_str("/d");
        }
        write(&root, &format!("{deep}/f"), b"x");
        let r = backup(&opts(&root, &out)).unwrap();
        let m = archived(&out);
        let max = m
            .entries
            .iter()
            .map(|e| e.path.split('/').count())
            .max()
            .unwrap();
        assert!(max <= MAX_DEPTH, "{max} levels archived");
        assert!(
            r.left_out.iter().any(|l| l.contains("deeper than")),
            "{:?}",
            r.left_out
        );
    }

    #[test]
    fn agent_files_over_the_size_limit_are_left_out() {
        let (_tmp, root, out) = state();
        write(&root, "groups/g1/workspace/big", &[1; 100]);
        write(&root, "groups/g1/workspace/small", &[1; 10]);
        write(&root, "sessions/ses_1/outbound/blob", &[1; 100]);
        // Host files have no such limit.
        write(&root, "tokens", &[1; 100]);
        let r = backup_limited(&opts(&root, &out), 10).unwrap();
        let m = archived(&out);
        let has = |p: &str| m.entries.iter().any(|e| e.path == p);
        assert!(has("groups/g1/workspace/small"));
        assert!(has("tokens"));
        assert!(!has("groups/g1/workspace/big"));
        assert!(!has("sessions/ses_1/outbound/blob"));
        assert_eq!(
            r.left_out
                .iter()
                .filter(|l| l.contains("bytes are not copied"))
                .count(),
            2,
            "{:?}",
            r.left_out
        );
    }

    #[test]
    fn the_master_key_is_never_written_to_staging() {
        let (tmp, root, out) = state();
        let staging = tmp.path().join("staging");
        std::fs::create_dir(&staging).unwrap();
        let dir = Dir::open(&root).unwrap();
        let (_, entries) = copy_keys(&dir, &root, &staging, true).unwrap();
        assert!(entries.iter().any(|e| e.path == MASTER));
        assert!(!staging.join(MASTER).exists());
        // It is still archived, from memory, byte for byte.
        backup(&opts(&root, &out)).unwrap();
        let mut a = tar::Archive::new(File::open(&out).unwrap());
        let mut key = None;
        for m in a.entries().unwrap() {
            let mut m = m.unwrap();
            if m.path().unwrap() == Path::new(MASTER) {
                let mut b = Vec::new();
                m.read_to_end(&mut b).unwrap();
                key = Some(b);
            }
        }
        assert_eq!(key.unwrap(), std::fs::read(root.join(MASTER)).unwrap());
        let restored = tmp.path().join("restored");
        super::super::restore(&super::super::RestoreOptions {
            from: out.clone(),
            state_dir: restored.clone(),
            master_key: None,
        })
        .unwrap();
        assert_eq!(
            std::fs::read(restored.join(MASTER)).unwrap(),
            std::fs::read(root.join(MASTER)).unwrap()
        );
    }

    /// The host's private files are written through a temporary `.<name>.tmp-<hex>`
    /// beside them (ironclaw-hostfs); one caught in flight, or left by a crash, is not
    /// state.
    #[test]
    fn the_temporary_files_of_host_writes_are_left_out() {
        let (_tmp, root, out) = state();
        for name in [
            ".tokens.tmp-0123456789abcdef",
            ".sealed-keys.tmp-fedcba9876543210",
            ".dev-token.tmp-00000000ffffffff",
        ] {
            write(&root, name, b"half a file");
            assert!(left_out_by_name(true, name), "{name}");
        }
        backup(&opts(&root, &out)).unwrap();
        let m = archived(&out);
        assert!(
            !m.entries.iter().any(|e| e.path.contains(".tmp-")),
            "{:?}",
            m.entries
        );
        assert!(!left_out_by_name(true, ".tokens.tmp-not-hex"));
    }

    /// Only the top level holds the host writer's temporary files: the same name deep
    /// in a group's workspace is an agent's file, and is backed up.
    #[test]
    fn a_temporary_looking_name_below_the_top_level_is_backed_up() {
        let (_tmp, root, out) = state();
        let name = ".x.tmp-0123456789abcdef";
        write(&root, name, b"a write in flight");
        let deep = format!("groups/g1/workspace/notes/{name}");
        write(&root, &deep, b"an agent's file");
        assert!(left_out_by_name(true, name));
        assert!(!left_out_by_name(false, name));

        let r = backup(&opts(&root, &out)).unwrap();
        let m = archived(&out);
        let file = m.entries.iter().find(|e| e.path == deep);
        assert!(
            file.is_some_and(|e| e.kind == EntryKind::File),
            "{:?}",
            m.entries
        );
        assert!(!m.entries.iter().any(|e| e.path == name), "{:?}", m.entries);
        assert!(r.left_out.is_empty(), "{:?}", r.left_out);
        // Its bytes are in the archive.
        let mut a = tar::Archive::new(File::open(&out).unwrap());
        let mut found = None;
        for f in a.entries().unwrap() {
            let mut f = f.unwrap();
            if f.path().unwrap() == Path::new(&deep) {
                let mut b = Vec::new();
                f.read_to_end(&mut b).unwrap();
                found = Some(b);
            }
        }
        assert_eq!(found.as_deref(), Some(&b"an agent's file"[..]));
    }

    #[test]
    fn transient_names_and_caches_are_left_out() {
        for (top, name) in [
            (true, "keys"),
            (true, "images"),
            (true, "runsc"),
            (true, "bundles"),
            (false, "inbound.db-journal"),
            (false, "tokens.tmp"),
            (false, "sealed-keys.next"),
            (false, "master.key.new"),
            (true, "modelproxy.sock.d"),
        ] {
            assert!(left_out_by_name(top, name), "{name}");
        }
        for (top, name) in [
            (false, "keys"),
            (true, "sessions"),
            (true, "registry.db"),
            (false, "workspace"),
        ] {
            assert!(!left_out_by_name(top, name), "{name}");
        }
    }
}
