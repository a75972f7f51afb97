//! Host files the daemon owns: private, atomic, never through a link.
//!
//! The control plane and `ironctl` keep a few small files of their own: the master key
//! and the sealed key store (`ironclaw-keys`), the operator token file
//! (`ironclaw-identity`), the `--dev` token (the daemon), and in `ironclaw-image` the
//! OCI image layouts that `ironctl image` writes (every blob, layers included, and
//! `index.json`), the image signing key pair and the provisioner's ready markers. They
//! are all written here, one way:
//!
//! - [`write_private`]: replace a file's contents with new ones, mode 0600, atomically
//!   and durably. [`write_atomic`] is the same with a [`FileMode`] for the rare file
//!   another user must read (an image layout, which runsc reads).
//! - [`create_private`]: create a file that must not exist yet, mode 0600, durably (the
//!   staging files of a key rotation, which are renamed into place later; a new image
//!   signing key). [`create_file`] is the same with a [`FileMode`] (the public half).
//! - [`fsync_dir`]: make a directory's entries durable after a rename or removal of
//!   one's own.
//! - [`is_temp_name`]: whether a name is one of this crate's temporary files, which a
//!   copy of the directory (a backup) leaves out.
//! - [`remove_stale_temp_files`]: remove the temporary files interrupted writes left in
//!   one directory (the daemon's state dir, as it starts).
//!
//! # What a write guarantees
//!
//! 1. The bytes go to a temporary file in the target's own directory,
//!    `.<name>.tmp-<16 hex>`, opened with `O_CREAT | O_EXCL | O_NOFOLLOW` and its mode
//!    given at creation. Whatever is planted at that name (a symlink, a FIFO, a file) is
//!    never opened or followed, and the contents are never readable by others, not even
//!    for an instant. The random suffix keeps two writers of one file (the daemon and
//!    `ironctl` on the token file) from sharing, or removing, each other's temporary
//!    file.
//! 2. The mode is set again on the open file (`fchmod`): the umask may have removed
//!    bits, the owner's included.
//! 3. The bytes are written and the file is fsynced.
//! 4. The file is renamed over the target: a reader, or a crash, sees the old file or
//!    the new one, never a torn one. rename(2) replaces a symlink at the target; it
//!    does not follow it.
//! 5. The directory is fsynced, or the rename may not survive a crash. If only this
//!    step fails, the error is [`HostFsError::NotDurable`]: readers already see the
//!    new file ([`HostFsError::in_place`]), which a caller caching the contents must
//!    know.
//!
//! On a failure before the rename the temporary file is removed and the target keeps
//! its old contents. A crash can leave a temporary file behind (with the target's mode,
//! never read back). Its name alone cannot tell it from another writer's file in
//! flight, so only a caller that knows no writer of the directory is running removes
//! it, with [`remove_stale_temp_files`]: the daemon for its state dir as it starts, the
//! image provisioner for its cache under its lock.
//!
//! # What it is not for
//!
//! - **Paths a sandbox can write** (its outbound and heartbeat directories, agent
//!   workspaces). Only the *last* component is never followed here; the directories
//!   above it are trusted as the daemon's own (the state dir is 0700). A tree a sandbox
//!   writes needs every component opened from a trusted directory descriptor
//!   (`openat`, no-follow); such helpers belong in this crate but are not here yet.
//! - **Reading.** Key and token files are read by their owners, each with its own checks
//!   (a regular file, owner-only mode, the same file from `lstat` to `open`) and errors
//!   that name the fix.
//! - **Large or streamed data** (backup archives, the files of an unpacked rootfs):
//!   those are written once, into a directory their writer has just created for them.
//!   An image layout's blobs, layers included, are written here: they are built in
//!   memory and small (the sandbox image is about 10 MiB).
//! - **Locking.** Two writers of one file never corrupt it, but the last rename wins.

#[cfg(not(unix))]
compile_error!("ironclaw-hostfs relies on Unix modes, O_NOFOLLOW and rename(2)");

mod error;
mod stale;
mod write;

pub use error::HostFsError;
pub use stale::remove_stale_temp_files;
pub use write::{
    create_file, create_private, fsync_dir, is_temp_name, write_atomic, write_private, FileMode,
};
