//! Users: principals the host knows by name.

use ironclaw_contract::ids::UserId;
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::error::RegistryError;
use crate::model::User;
use crate::rows::{parse, revalidate};

type R<T> = Result<T, RegistryError>;

const TABLE: &str = "users";
const SELECT: &str = "SELECT id, kind, display_name FROM users";

pub(crate) fn get(c: &Connection, id: &UserId) -> R<Option<User>> {
    let raw = c
        .prepare_cached(&format!("{SELECT} WHERE id = ?1"))?
        .query_row([id.as_str()], Raw::from_row)
        .optional()?;
    raw.map(Raw::decode).transpose()
}

/// All users, sorted by id.
pub(crate) fn list(c: &Connection) -> R<Vec<User>> {
    let mut stmt = c.prepare_cached(&format!("{SELECT} ORDER BY id"))?;
    let raws = stmt
        .query_map([], Raw::from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    raws.into_iter().map(Raw::decode).collect()
}

/// Inserts or replaces a user.
pub(crate) fn put(c: &Connection, u: User) -> R<User> {
    let u = u.normalized()?;
    c.prepare_cached(
        "INSERT INTO users (id, kind, display_name) VALUES (?1, ?2, ?3) \
         ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, \
             display_name = excluded.display_name",
    )?
    .execute(params![u.id.as_str(), u.kind, u.display_name])?;
    Ok(u)
}

struct Raw(String, String, String);

impl Raw {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self(r.get(0)?, r.get(1)?, r.get(2)?))
    }

    fn decode(self) -> R<User> {
        let Raw(id, kind, display_name) = self;
        let u = User {
            id: parse(TABLE, &id, "id", &id)?,
            kind,
            display_name,
        };
        revalidate(TABLE, &id, u, User::normalized)
    }
}
