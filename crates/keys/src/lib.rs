//! Key custody: the host master key, sealed per-session keys, rotation.
