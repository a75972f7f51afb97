//! The IronClaw sandbox image and its chain of trust.
//!
//! The sandbox image is the statically linked `ironclaw-sandbox` binary plus a minimal
//! `/etc` and the empty mount points its runtime spec needs: no shell, no interpreter.
//! This crate
//! - **builds** it as an OCI image layout, deterministically ([`ImageBuilder`],
//!   [`build_and_sign`]);
//! - **signs** it the way cosign does, with ECDSA P-256 keys ([`generate_signing_key`],
//!   [`SigningKey`], [`sign_layout`]);
//! - **provisions** a rootfs from a layout for runsc ([`Provisioner`]): trust first (a
//!   pinned manifest digest or a valid signature by a key in the [`TrustPolicy`],
//!   verified with the `sigstore` crate), then the digest of every blob, then a
//!   refusing-by-default unpack into a cache keyed by manifest digest.
//!
//! Every failure is a typed error saying exactly what was refused; there is no
//! "unverified" mode and no fallback (DESIGN §2.7, fail closed). The formats, the
//! policy file and the operator's manual checks are described in `docs/image-trust.md`.
//!
//! Not here: building the OCI runtime spec or running runsc (`ironclaw-isolation`),
//! pulling from registries (layouts are local directories), keyless (Fulcio/Rekor)
//! signatures.

mod build;
mod cosign;
mod digest;
mod layout;
mod policy;
mod provision;
mod unpack;
mod verify;

pub use build::{
    build_and_sign, BuildError, BuiltImage, ImageBuilder, IMAGE_TAG, SANDBOX_BINARY_PATH,
    SANDBOX_UID, SANDBOX_USER,
};
pub use cosign::{
    generate_signing_key, sign_layout, simple_signing_payload, KeyError, KeyFiles, PublicKey,
    SignError, SigningKey, DEFAULT_REFERENCE, PRIVATE_KEY_FILE, PUBLIC_KEY_FILE,
};
pub use digest::{Digest, DigestError};
pub use layout::LayoutError;
pub use policy::{PolicyError, TrustPolicy, POLICY_VERSION};
pub use provision::{Limits, ProvisionError, Provisioner, Rootfs};
pub use unpack::{LayerError, Refusal};
pub use verify::{verify_image, Trust, UntrustedReason, VerifiedImage, VerifyError};
