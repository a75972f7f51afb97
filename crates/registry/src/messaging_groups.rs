//! Messaging groups: one per (channel type, platform id, instance).

use ironclaw_contract::enums::UnknownSenderPolicy;
use ironclaw_contract::ids::MessagingGroupId;
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::error::{corrupt, not_found, RegistryError};
use crate::mint::unique_id;
use crate::model::MessagingGroup;
use crate::rows::parse;
use crate::validate::{check_channel_type, check_instance, check_platform_id};

type R<T> = Result<T, RegistryError>;

const TABLE: &str = "messaging_groups";
const SELECT: &str = "SELECT id, channel_type, platform_id, instance, is_group, \
                      unknown_sender_policy FROM messaging_groups";

pub(crate) fn get(c: &Connection, id: &MessagingGroupId) -> R<Option<MessagingGroup>> {
    let raw = c
        .prepare_cached(&format!("{SELECT} WHERE id = ?1"))?
        .query_row([id.as_str()], Raw::from_row)
        .optional()?;
    raw.map(Raw::decode).transpose()
}

/// All messaging groups, sorted by id.
pub(crate) fn list(c: &Connection) -> R<Vec<MessagingGroup>> {
    let mut stmt = c.prepare_cached(&format!("{SELECT} ORDER BY id"))?;
    let raws = stmt
        .query_map([], Raw::from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    raws.into_iter().map(Raw::decode).collect()
}

pub(crate) fn require(c: &Connection, id: &MessagingGroupId) -> R<()> {
    let found = c
        .prepare_cached("SELECT 1 FROM messaging_groups WHERE id = ?1")?
        .query_row([id.as_str()], |_| Ok(()))
        .optional()?;
    found.ok_or_else(|| not_found("messaging group", id.as_str()))
}

/// The group of the triple, if any. `instance` `None` or empty means the channel
/// type, as at creation.
pub(crate) fn find(
    c: &Connection,
    channel_type: &str,
    platform_id: &str,
    instance: Option<&str>,
) -> R<Option<MessagingGroup>> {
    let instance = default_instance(channel_type, instance);
    let raw = c
        .prepare_cached(&format!(
            "{SELECT} WHERE channel_type = ?1 AND platform_id = ?2 AND instance = ?3"
        ))?
        .query_row([channel_type, platform_id, instance], Raw::from_row)
        .optional()?;
    raw.map(Raw::decode).transpose()
}

/// Returns the group of the triple, creating it with `is_group` and `policy` if it
/// does not exist. An existing group is returned unchanged: the flags are creation
/// parameters, not an update (changing a sender policy is a decision, not a lookup).
pub(crate) fn get_or_create(
    c: &Connection,
    channel_type: &str,
    platform_id: &str,
    instance: Option<&str>,
    is_group: bool,
    policy: UnknownSenderPolicy,
) -> R<MessagingGroup> {
    check_channel_type(channel_type)?;
    check_platform_id(platform_id)?;
    let instance = default_instance(channel_type, instance);
    check_instance(instance)?;
    if let Some(g) = find(c, channel_type, platform_id, Some(instance))? {
        return Ok(g);
    }
    let id = MessagingGroupId::new(unique_id(c, "mg_", TABLE)?)
        .map_err(|e| corrupt(TABLE, "<minted>", e))?;
    c.prepare_cached(
        "INSERT INTO messaging_groups (id, channel_type, platform_id, instance, is_group, \
             unknown_sender_policy) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        id.as_str(),
        channel_type,
        platform_id,
        instance,
        is_group,
        policy.as_str()
    ])?;
    Ok(MessagingGroup {
        id,
        channel_type: channel_type.to_owned(),
        platform_id: platform_id.to_owned(),
        instance: instance.to_owned(),
        is_group,
        unknown_sender_policy: policy,
    })
}

/// A missing or empty instance is the channel type's default installation.
fn default_instance<'a>(channel_type: &'a str, instance: Option<&'a str>) -> &'a str {
    match instance {
        Some(i) if !i.is_empty() => i,
        _ => channel_type,
    }
}

struct Raw {
    id: String,
    channel_type: String,
    platform_id: String,
    instance: String,
    is_group: bool,
    policy: String,
}

impl Raw {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: r.get(0)?,
            channel_type: r.get(1)?,
            platform_id: r.get(2)?,
            instance: r.get(3)?,
            is_group: r.get(4)?,
            policy: r.get(5)?,
        })
    }

    fn decode(self) -> R<MessagingGroup> {
        let k = self.id.as_str();
        let bad = |e: RegistryError| corrupt(TABLE, k, e);
        check_channel_type(&self.channel_type).map_err(bad)?;
        check_platform_id(&self.platform_id).map_err(bad)?;
        check_instance(&self.instance).map_err(bad)?;
        Ok(MessagingGroup {
            id: parse(TABLE, k, "id", k)?,
            unknown_sender_policy: parse(TABLE, k, "unknown_sender_policy", &self.policy)?,
            channel_type: self.channel_type,
            platform_id: self.platform_id,
            instance: self.instance,
            is_group: self.is_group,
        })
    }
}
