//! Server-minted ids: a prefix and 16 hex digits from the OS random source.

use rusqlite::{Connection, OptionalExtension};

use crate::error::RegistryError;

/// How many fresh ids to try before giving up. With 64 random bits a single
/// collision is already improbable; a streak means the random source is broken.
const ATTEMPTS: usize = 4;

/// Mints `<prefix><16 hex>` not yet present in `table.id`. Runs inside the caller's
/// write transaction, so nobody can take the id between the check and the insert.
pub(crate) fn unique_id(
    c: &Connection,
    prefix: &str,
    table: &'static str,
) -> Result<String, RegistryError> {
    // `table` is one of the crate's own table names, never caller input.
    let sql = format!("SELECT 1 FROM {table} WHERE id = ?1");
    for _ in 0..ATTEMPTS {
        let id = random_id(prefix)?;
        let taken = c
            .prepare_cached(&sql)?
            .query_row([&id], |_| Ok(()))
            .optional()?
            .is_some();
        if !taken {
            return Ok(id);
        }
    }
    Err(RegistryError::AlreadyExists {
        what: table,
        id: format!("{prefix}… ({ATTEMPTS} random ids in a row were taken)"),
    })
}

fn random_id(prefix: &str) -> Result<String, RegistryError> {
    let mut raw = [0u8; 8];
    getrandom::fill(&mut raw).map_err(RegistryError::Rng)?;
    let mut id = String::with_capacity(prefix.len() + 16);
    id.push_str(prefix);
    for b in raw {
        id.push(char::from(HEX[usize::from(b >> 4)]));
        id.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    Ok(id)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    #[test]
    fn shape() {
        let id = super::random_id("ses_").unwrap();
        assert_eq!(id.len(), 20);
        assert!(id[4..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_ne!(id, super::random_id("ses_").unwrap());
    }
}
