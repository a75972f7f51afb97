//! Decoding stored text back into typed values.
//!
//! Every column read is parsed with the same constructor a write would use, and a
//! failure becomes [`RegistryError::CorruptRow`] naming the table, the row and the
//! column — never a panic, never a silently defaulted value.

use std::fmt::Display;
use std::str::FromStr;

use serde::de::DeserializeOwned;

use crate::error::{corrupt, RegistryError};

/// Parses `value` of `column` in row `key` of `table`.
pub(crate) fn parse<T>(
    table: &'static str,
    key: &str,
    column: &str,
    value: &str,
) -> Result<T, RegistryError>
where
    T: FromStr,
    T::Err: Display,
{
    value
        .parse()
        .map_err(|e| corrupt(table, key, format!("{column}: {e}")))
}

/// Parses the JSON column `column`.
pub(crate) fn json<T: DeserializeOwned>(
    table: &'static str,
    key: &str,
    column: &str,
    value: &str,
) -> Result<T, RegistryError> {
    serde_json::from_str(value).map_err(|e| corrupt(table, key, format!("{column}: {e}")))
}

/// Serializes a capability list for its JSON column. Plain data (strings, bools,
/// derived structs) cannot fail to serialize; the error is still mapped rather than
/// unwrapped.
pub(crate) fn to_json<T: serde::Serialize>(
    field: &'static str,
    value: &T,
) -> Result<String, RegistryError> {
    serde_json::to_string(value).map_err(|e| crate::error::invalid(field, e.to_string()))
}

/// Re-runs a write's validation on a decoded row: the stored value must be valid and
/// already normalized, or it did not come from this crate's writes.
pub(crate) fn revalidate<T: PartialEq + Clone>(
    table: &'static str,
    key: &str,
    value: T,
    normalize: impl FnOnce(T) -> Result<T, RegistryError>,
) -> Result<T, RegistryError> {
    match normalize(value.clone()) {
        Ok(n) if n == value => Ok(value),
        Ok(_) => Err(corrupt(
            table,
            key,
            "stored value is not in normalized form",
        )),
        Err(e) => Err(corrupt(table, key, e)),
    }
}
