//! Which runsc is accepted: `runsc --version` parsed and compared with
//! [`MIN_VERSION`], and `runsc flags` checked for the flags isolation depends on. A
//! missing, too old or incomplete runsc is a typed error naming the fix, never a
//! fallback.
//!
//! Not for: running containers (the verb files) or the global flags every call carries
//! ([`RunscIsolator::global_args`]).

use std::ffi::OsStr;

use super::{RunscError, RunscIsolator, MIN_VERSION, STDERR_TAIL};

/// How much of `runsc flags` is read when checking for the flags we depend on.
const FLAGS_LIMIT: usize = 256 << 10;

/// The parsed `runsc --version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunscVersion {
    /// The first line, verbatim (recorded in launch receipts).
    pub raw: String,
    /// The release date as `YYYYMMDD`.
    pub date: u32,
}

impl RunscVersion {
    /// Parses `runsc version 0.0~20221219.0` or `runsc version release-20240513.0`:
    /// the first run of eight digits starting with `20` after `version`.
    pub fn parse(output: &str) -> Option<Self> {
        let line = output.lines().find(|l| l.contains("version"))?.trim();
        let after = &line[line.find("version")? + "version".len()..];
        let bytes = after.as_bytes();
        let date = (0..bytes.len().saturating_sub(7)).find_map(|i| {
            let window = &bytes[i..i + 8];
            let starts_run = i == 0 || !bytes[i - 1].is_ascii_digit();
            if !starts_run || !window.starts_with(b"20") || !window.iter().all(u8::is_ascii_digit) {
                return None;
            }
            std::str::from_utf8(window).ok()?.parse().ok()
        })?;
        Some(Self {
            raw: line.to_owned(),
            date,
        })
    }
}

impl RunscIsolator {
    pub(super) fn check_runtime(&self) -> Result<RunscVersion, RunscError> {
        let out = self.run_raw("--version", "", &[OsStr::new("--version")], STDERR_TAIL)?;
        let text = String::from_utf8_lossy(&out.stdout);
        let version = RunscVersion::parse(&text).ok_or_else(|| RunscError::UnparsableVersion {
            output: text.trim().chars().take(200).collect(),
        })?;
        if version.date < MIN_VERSION {
            return Err(RunscError::TooOld {
                found: version.raw,
                minimum: MIN_VERSION,
            });
        }
        // `runsc flags` prints the flag list (to stderr on the measured release; ~8 KB).
        let out = self.run_raw("flags", "", &[OsStr::new("flags")], FLAGS_LIMIT)?;
        let mut all = String::from_utf8_lossy(&out.stdout).into_owned();
        all.push_str(&out.stderr);
        for flag in ["host-uds", "oci-seccomp", "network"] {
            if !all.contains(&format!("-{flag}")) {
                return Err(RunscError::MissingFeature { flag });
            }
        }
        Ok(version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Mutex;

    use crate::runsc::command::lock;
    use crate::runsc::RunscConfig;

    #[test]
    fn parses_debian_and_upstream_versions() {
        let v = RunscVersion::parse("runsc version 0.0~20221219.0\nspec: 1.0.2-dev\n").unwrap();
        assert_eq!(v.date, 20221219);
        assert_eq!(v.raw, "runsc version 0.0~20221219.0");
        let v = RunscVersion::parse("runsc version release-20240513.0\nspec: 1.1.0\n").unwrap();
        assert_eq!(v.date, 20240513);
        assert!(RunscVersion::parse("runsc version 1.2.3").is_none());
        assert!(RunscVersion::parse("").is_none());
        assert!(RunscVersion::parse("version 120221219").is_none());
        // Never panics on non-ASCII text around the digits.
        assert!(RunscVersion::parse("runsc version ééé20é").is_none());
        assert_eq!(
            RunscVersion::parse("runsc version é20221219").map(|v| v.date),
            Some(20221219)
        );
    }

    /// Serialises the tests that spawn processes while another writes an executable:
    /// a child forked in between would inherit the write descriptor and make the exec
    /// fail with ETXTBSY.
    static SPAWN: Mutex<()> = Mutex::new(());

    #[test]
    fn a_missing_binary_names_the_fix() {
        let _g = lock(&SPAWN);
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = RunscConfig::new(dir.path());
        cfg.binary = dir.path().join("no-such-runsc");
        let err = RunscIsolator::new(cfg).unwrap_err();
        assert!(matches!(err, RunscError::NotInstalled { .. }), "{err}");
        assert!(
            err.to_string().contains("apt-get install -y runsc"),
            "{err}"
        );
    }

    #[test]
    fn an_old_runsc_is_refused_with_the_fix() {
        let _g = lock(&SPAWN);
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("runsc");
        fs::write(&fake, "#!/bin/sh\necho 'runsc version 0.0~20200101.0'\n").unwrap();
        fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
        let mut cfg = RunscConfig::new(dir.path().join("state"));
        cfg.binary = fake;
        let err = RunscIsolator::new(cfg).unwrap_err();
        assert!(matches!(err, RunscError::TooOld { .. }), "{err}");
        assert!(
            err.to_string().contains("apt-get install -y runsc"),
            "{err}"
        );
    }

    #[test]
    fn a_runsc_without_the_needed_flags_is_refused() {
        let _g = lock(&SPAWN);
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("runsc");
        fs::write(
            &fake,
            "#!/bin/sh\ncase \"$1\" in --version) echo 'runsc version release-20240101.0';; \
             *) echo '  -network value';; esac\n",
        )
        .unwrap();
        fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
        let mut cfg = RunscConfig::new(dir.path().join("state"));
        cfg.binary = fake;
        let err = RunscIsolator::new(cfg).unwrap_err();
        assert!(
            matches!(err, RunscError::MissingFeature { flag: "host-uds" }),
            "{err}"
        );
    }
}
