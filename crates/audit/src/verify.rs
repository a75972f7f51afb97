//! Checking a chain: the offline [`verify`] and the scan [`crate::AuditLog`] shares.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use crate::record::{encode, AuditRecord, GENESIS_HASH, MAX_LINE_BYTES};

/// What an intact chain looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Number of records (equal to `last_seq`, since seqs start at 1 without gaps).
    pub records: u64,
    /// 0 for an empty log.
    pub last_seq: u64,
    /// [`GENESIS_HASH`] for an empty log.
    pub last_hash: String,
}

/// Where and why a chain is broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainError {
    /// The seq the verifier expected at `line` — the seq of the first bad (or missing)
    /// record. `None` only when the file could not be read at all.
    pub seq: Option<u64>,
    /// 1-based line number; 0 when the file could not be read.
    pub line: usize,
    pub reason: ChainErrorKind,
}

impl fmt::Display for ChainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.reason, self.seq) {
            (ChainErrorKind::Unreadable { error }, _) => {
                write!(f, "cannot read the audit log: {error}")
            }
            (reason, Some(seq)) => write!(
                f,
                "audit chain broken at seq {seq} (line {}): {reason}",
                self.line
            ),
            (reason, None) => write!(f, "audit chain broken at line {}: {reason}", self.line),
        }
    }
}

impl std::error::Error for ChainError {}

/// Why a chain is broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainErrorKind {
    #[error("{error}")]
    Unreadable { error: String },
    #[error("the line is not an audit record ({error})")]
    Unparseable { error: String },
    #[error("the line is longer than {max} bytes", max = MAX_LINE_BYTES)]
    LineTooLong,
    #[error("{}", seq_mismatch(*expected, *found))]
    SeqMismatch { expected: u64, found: u64 },
    #[error("prev_hash does not match the previous record's hash — a record was replaced or the chain was spliced")]
    PrevHashMismatch,
    #[error("hash mismatch — the record was edited")]
    HashMismatch,
    #[error("the line is not its record's canonical encoding — the record was edited")]
    NonCanonical,
    #[error(
        "torn tail: the last {bytes} bytes are not newline-terminated — a write was interrupted"
    )]
    TornTail { bytes: u64 },
    #[error("the log ends at seq {last_seq}, before the anchored seq {anchor_seq} — trailing records were deleted")]
    Truncated { anchor_seq: u64, last_seq: u64 },
    #[error("the record's hash differs from the anchored hash — the chain was rewritten")]
    AnchorMismatch,
}

fn seq_mismatch(expected: u64, found: u64) -> String {
    if found < expected {
        format!("found seq {found} where seq {expected} belongs — a record was duplicated or moved")
    } else {
        format!("found seq {found} where seq {expected} belongs — a record was deleted or moved")
    }
}

/// Verifies the whole chain in `path`: every line a canonical record, seqs 1, 2, 3, …,
/// every `prev_hash` the previous `hash`, every `hash` right, and the file ending in a
/// newline. Reads the file once, streaming. An empty file is an intact, empty chain.
///
/// Deleting whole lines from the *end* of the file leaves a valid, shorter chain; only
/// [`verify_against`] with an anchor kept elsewhere detects that.
pub fn verify(path: &Path) -> Result<VerifyReport, ChainError> {
    let file = File::open(path).map_err(|e| unreadable(&e))?;
    let scan = scan(BufReader::new(file), &mut |_| {}).map_err(ScanError::into_chain)?;
    match scan.torn {
        Some(torn) => Err(torn.into_error()),
        None => Ok(scan.report),
    }
}

/// [`verify`], then checks the chain against an anchor recorded earlier (for example
/// [`crate::AuditLog::last_seq`] / [`crate::AuditLog::last_hash`] saved in the daemon's
/// state or shipped off the machine): the log must still contain record
/// `expected_last_seq`, with hash `expected_last_hash`. Records appended after the
/// anchor was taken are fine. An anchor of seq 0 is the empty chain ([`GENESIS_HASH`]).
pub fn verify_against(
    path: &Path,
    expected_last_seq: u64,
    expected_last_hash: &str,
) -> Result<VerifyReport, ChainError> {
    let file = File::open(path).map_err(|e| unreadable(&e))?;
    let mut anchored: Option<String> = None;
    let scan = scan(BufReader::new(file), &mut |rec| {
        if rec.seq == expected_last_seq {
            anchored = Some(rec.hash);
        }
    })
    .map_err(ScanError::into_chain)?;
    if let Some(torn) = scan.torn {
        return Err(torn.into_error());
    }
    let report = scan.report;
    let hash_at_anchor = if expected_last_seq == 0 {
        Some(GENESIS_HASH.to_owned())
    } else {
        anchored
    };
    match hash_at_anchor {
        None => Err(ChainError {
            seq: Some(report.last_seq.saturating_add(1)),
            line: line_of(report.records.saturating_add(1)),
            reason: ChainErrorKind::Truncated {
                anchor_seq: expected_last_seq,
                last_seq: report.last_seq,
            },
        }),
        Some(h) if h != expected_last_hash => Err(ChainError {
            seq: Some(expected_last_seq),
            line: line_of(expected_last_seq),
            reason: ChainErrorKind::AnchorMismatch,
        }),
        Some(_) => Ok(report),
    }
}

/// In an intact chain, record `seq` is on line `seq`.
fn line_of(seq: u64) -> usize {
    usize::try_from(seq).unwrap_or(usize::MAX)
}

fn unreadable(e: &io::Error) -> ChainError {
    ChainError {
        seq: None,
        line: 0,
        reason: ChainErrorKind::Unreadable {
            error: e.to_string(),
        },
    }
}

/// The result of reading a log front to back.
pub(crate) struct Scan {
    pub report: VerifyReport,
    /// Length of the verified prefix: every complete (newline-terminated) line.
    pub good_len: u64,
    /// A last line without its newline, if any. Not verified and not counted.
    pub torn: Option<Torn>,
}

pub(crate) struct Torn {
    pub line: usize,
    /// The seq the torn line would have had.
    pub seq: u64,
    pub bytes: u64,
    /// Whether the partial line is nevertheless a complete record (then it is not a
    /// crash artifact `open` may silently drop).
    pub parses: bool,
}

impl Torn {
    pub fn into_error(self) -> ChainError {
        ChainError {
            seq: Some(self.seq),
            line: self.line,
            reason: ChainErrorKind::TornTail { bytes: self.bytes },
        }
    }
}

pub(crate) enum ScanError {
    Io(io::Error),
    Chain(ChainError),
}

impl ScanError {
    fn into_chain(self) -> ChainError {
        match self {
            ScanError::Io(e) => unreadable(&e),
            ScanError::Chain(c) => c,
        }
    }
}

/// Reads a log front to back, checking every complete line, and hands each verified
/// record to `on_record` in order. Stops at the first broken link.
pub(crate) fn scan<R: BufRead>(
    mut reader: R,
    on_record: &mut dyn FnMut(AuditRecord),
) -> Result<Scan, ScanError> {
    let mut records: u64 = 0;
    let mut last_hash = GENESIS_HASH.to_owned();
    let mut good_len: u64 = 0;
    let mut line_no: usize = 0;
    let mut buf = Vec::new();
    // One byte past the longest allowed line plus its newline: reading that much
    // without a newline proves the line is too long, without buffering all of it.
    let cap = (MAX_LINE_BYTES + 2) as u64;

    loop {
        buf.clear();
        let n = (&mut reader)
            .take(cap)
            .read_until(b'\n', &mut buf)
            .map_err(ScanError::Io)?;
        if n == 0 {
            break;
        }
        line_no += 1;
        // Records are seq 1, 2, … on lines 1, 2, …; `records` never exceeds the number
        // of lines read, so this cannot overflow.
        let expected = records + 1;
        let fail = |reason| {
            ScanError::Chain(ChainError {
                seq: Some(expected),
                line: line_no,
                reason,
            })
        };

        let Some(content) = buf.strip_suffix(b"\n") else {
            if buf.len() > MAX_LINE_BYTES {
                return Err(fail(ChainErrorKind::LineTooLong));
            }
            // Fewer bytes than the cap and no newline: this is the end of the file.
            return Ok(Scan {
                report: VerifyReport {
                    records,
                    last_seq: records,
                    last_hash,
                },
                good_len,
                torn: Some(Torn {
                    line: line_no,
                    seq: expected,
                    bytes: buf.len() as u64,
                    parses: serde_json::from_slice::<AuditRecord>(&buf).is_ok(),
                }),
            });
        };
        if content.len() > MAX_LINE_BYTES {
            return Err(fail(ChainErrorKind::LineTooLong));
        }

        let rec: AuditRecord = serde_json::from_slice(content).map_err(|e| {
            fail(ChainErrorKind::Unparseable {
                error: e.to_string().chars().take(200).collect(),
            })
        })?;
        if rec.seq != expected {
            return Err(fail(ChainErrorKind::SeqMismatch {
                expected,
                found: rec.seq,
            }));
        }
        if rec.prev_hash != last_hash {
            return Err(fail(ChainErrorKind::PrevHashMismatch));
        }
        let enc = encode(rec.seq, &rec.time, &rec.prev_hash, &rec.event).map_err(|e| {
            fail(ChainErrorKind::Unparseable {
                error: e.to_string(),
            })
        })?;
        if enc.hash != rec.hash {
            return Err(fail(ChainErrorKind::HashMismatch));
        }
        // The hash covers the parsed values; this covers the bytes (whitespace, escapes,
        // duplicate keys, a non-canonical time) so that no edit goes unnoticed.
        if enc.line != content {
            return Err(fail(ChainErrorKind::NonCanonical));
        }

        records = expected;
        good_len += buf.len() as u64;
        last_hash.clone_from(&rec.hash);
        on_record(rec);
    }

    Ok(Scan {
        report: VerifyReport {
            records,
            last_seq: records,
            last_hash,
        },
        good_len,
        torn: None,
    })
}
