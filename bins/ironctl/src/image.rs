//! `ironctl image build` and `ironctl image keygen`: the sandbox image and its signing
//! key, made on this machine (no daemon). Thin wrappers over `ironclaw_image`; the
//! formats and the trust policy are in docs/image-trust.md.
//!
//! Errors keep ironctl's exit-code scheme: something the operator must fix in what they
//! passed (a dynamically linked binary, a non-empty `--out`, a key others can read, a key
//! that already exists, a path that does not exist) is a usage error (2); anything else
//! (an I/O failure while writing, a signing failure) is a failed request (1).

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use ironclaw_image::{BuildError, BuiltImage, KeyError, KeyFiles, LayoutError, SignError};
use serde_json::json;

use crate::client::CliError;

/// The command that builds the static agent, for errors that need it.
const STATIC_BUILD: &str = "RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --target x86_64-unknown-linux-gnu -p ironclaw-sandbox";

/// `image build`: packs `bin` into an OCI layout at `out`, signed with `sign_key` if
/// given, and reports the manifest digest.
pub fn build(
    bin: &Path,
    out: &Path,
    sign_key: Option<&Path>,
    as_json: bool,
) -> Result<(), CliError> {
    let built =
        ironclaw_image::build_and_sign(bin, out, sign_key).map_err(|e| build_error(e, bin))?;
    report_built(&built, sign_key, as_json);
    Ok(())
}

fn report_built(built: &BuiltImage, sign_key: Option<&Path>, as_json: bool) {
    if as_json {
        crate::output::json(&json!({
            "layout": built.layout.display().to_string(),
            "manifest_digest": built.manifest_digest.to_string(),
            "signed": built.signed,
            "sign_key": sign_key.map(|k| k.display().to_string()),
        }));
        return;
    }
    println!("image layout:    {}", built.layout.display());
    println!("manifest digest: {}", built.manifest_digest);
    match sign_key {
        Some(key) if built.signed => println!(
            "signed:          yes (cosign signature by {})",
            key.display()
        ),
        _ => {
            println!("signed:          no");
            println!(
                "  a trust policy must pin {} (\"pinned_digests\"), or sign the image: --sign-key",
                built.manifest_digest
            );
        }
    }
}

/// `image keygen`: a fresh ECDSA P-256 key pair in `dir`.
pub fn keygen(dir: &Path, as_json: bool) -> Result<(), CliError> {
    let files = ironclaw_image::generate_signing_key(dir).map_err(|e| key_error(e, None))?;
    report_keys(&files, as_json);
    Ok(())
}

fn report_keys(files: &KeyFiles, as_json: bool) {
    if as_json {
        crate::output::json(&json!({
            "private_key": files.private_key.display().to_string(),
            "public_key": files.public_key.display().to_string(),
        }));
        return;
    }
    println!(
        "private key: {} (0600; signs images: keep it off the daemon's machine)",
        files.private_key.display()
    );
    println!(
        "public key:  {} (goes in the trust policy's \"cosign_keys\")",
        files.public_key.display()
    );
}

/// A missing input path is the operator's to fix; other I/O failures are not.
fn io_error(message: String, kind: ErrorKind) -> CliError {
    match kind {
        ErrorKind::NotFound => CliError::Usage(message),
        _ => CliError::Failed(message),
    }
}

fn build_error(e: BuildError, bin: &Path) -> CliError {
    let message = e.to_string();
    match e {
        // Name the flag when the path is the binary the operator passed.
        BuildError::Io { path, source, .. } if path == bin => {
            io_error(format!("--sandbox-bin: {message}"), source.kind())
        }
        BuildError::Io { source, .. } => io_error(message, source.kind()),
        BuildError::NotStaticExecutable { .. } => CliError::Usage(format!(
            "{message}\n  the image runs only the static agent: {STATIC_BUILD}"
        )),
        BuildError::BinaryTooLarge { .. } | BuildError::OutputExists { .. } => {
            CliError::Usage(message)
        }
        BuildError::Key(k) => key_error(k, Some("--sign-key")),
        BuildError::Sign(SignError::Key(k)) => key_error(k, Some("--sign-key")),
        // The reference is ironctl's own constant: a bad one is not the operator's input.
        BuildError::Sign(SignError::BadReference(_)) => CliError::Failed(message),
        BuildError::Sign(SignError::Layout(l)) | BuildError::Layout(l) => layout_error(l),
    }
}

/// Layout errors during a build are about the layout being written, never the input.
fn layout_error(e: LayoutError) -> CliError {
    CliError::Failed(e.to_string())
}

fn key_error(e: KeyError, flag: Option<&str>) -> CliError {
    let message = match flag {
        Some(flag) => format!("{flag}: {e}"),
        None => e.to_string(),
    };
    match e {
        KeyError::Io { source, .. } => io_error(message, source.kind()),
        KeyError::NotRegularFile { .. }
        | KeyError::LoosePermissions { .. }
        | KeyError::TooLarge { .. }
        | KeyError::Invalid { .. } => CliError::Usage(message),
        KeyError::Exists { path } => CliError::Usage(format!(
            "{message}\n  choose another --out, or move {} away first (images it signed need its public half)",
            display_dir(&path)
        )),
        KeyError::Sign(_) => CliError::Failed(message),
    }
}

fn display_dir(path: &Path) -> String {
    path.parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
        .join("image-signing.*")
        .display()
        .to_string()
}
