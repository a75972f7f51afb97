//! The read methods, written once and given to both [`crate::Registry`] and
//! [`crate::RegistryTx`], so a read inside a write transaction is the same query as a
//! read outside one. Each type supplies a private `read(|conn| …)` that provides the
//! connection (the registry's, or the open transaction's).

macro_rules! read_methods {
    () => {
        /// The agent group `id`, if it exists.
        pub fn agent_group(
            &self,
            id: &::ironclaw_contract::ids::AgentGroupId,
        ) -> Result<Option<$crate::model::AgentGroup>, $crate::RegistryError> {
            self.read(|c| $crate::agent_groups::get(c, id))
        }

        /// All agent groups, sorted by id.
        pub fn agent_groups(
            &self,
        ) -> Result<Vec<$crate::model::AgentGroup>, $crate::RegistryError> {
            self.read($crate::agent_groups::list)
        }

        /// The messaging group `id`, if it exists.
        pub fn messaging_group(
            &self,
            id: &::ironclaw_contract::ids::MessagingGroupId,
        ) -> Result<Option<$crate::model::MessagingGroup>, $crate::RegistryError> {
            self.read(|c| $crate::messaging_groups::get(c, id))
        }

        /// All messaging groups, sorted by id.
        pub fn messaging_groups(
            &self,
        ) -> Result<Vec<$crate::model::MessagingGroup>, $crate::RegistryError> {
            self.read($crate::messaging_groups::list)
        }

        /// The messaging group of the triple, if any (`instance: None` means the
        /// channel type). Never creates.
        pub fn find_messaging_group(
            &self,
            channel_type: &str,
            platform_id: &str,
            instance: Option<&str>,
        ) -> Result<Option<$crate::model::MessagingGroup>, $crate::RegistryError> {
            self.read(|c| $crate::messaging_groups::find(c, channel_type, platform_id, instance))
        }

        /// The wiring `id`, if it exists.
        pub fn wiring(
            &self,
            id: &str,
        ) -> Result<Option<$crate::model::Wiring>, $crate::RegistryError> {
            self.read(|c| $crate::wirings::get(c, id))
        }

        /// The wirings of a messaging group in routing order: priority descending,
        /// then id ascending.
        pub fn wirings_for(
            &self,
            mg: &::ironclaw_contract::ids::MessagingGroupId,
        ) -> Result<Vec<$crate::model::Wiring>, $crate::RegistryError> {
            self.read(|c| $crate::wirings::for_messaging_group(c, mg))
        }

        /// The user `id`, if known.
        pub fn user(
            &self,
            id: &::ironclaw_contract::ids::UserId,
        ) -> Result<Option<$crate::model::User>, $crate::RegistryError> {
            self.read(|c| $crate::users::get(c, id))
        }

        /// All users, sorted by id.
        pub fn users(&self) -> Result<Vec<$crate::model::User>, $crate::RegistryError> {
            self.read($crate::users::list)
        }

        /// Every role grant `user` holds, sorted by role, then scope (global first).
        pub fn roles_of(
            &self,
            user: &::ironclaw_contract::ids::UserId,
        ) -> Result<Vec<$crate::model::RoleGrant>, $crate::RegistryError> {
            self.read(|c| $crate::roles::of_user(c, user))
        }

        /// The members of `group`, sorted by user id.
        pub fn members_of(
            &self,
            group: &::ironclaw_contract::ids::AgentGroupId,
        ) -> Result<Vec<$crate::model::Member>, $crate::RegistryError> {
            self.read(|c| $crate::members::of_group(c, group))
        }

        /// Whether `user` is a member of `group` (roles not considered).
        pub fn is_member(
            &self,
            user: &::ironclaw_contract::ids::UserId,
            group: &::ironclaw_contract::ids::AgentGroupId,
        ) -> Result<bool, $crate::RegistryError> {
            self.read(|c| $crate::members::is_member(c, user, group))
        }

        /// The destinations of `group`, sorted by channel type, then platform id.
        pub fn destinations_of(
            &self,
            group: &::ironclaw_contract::ids::AgentGroupId,
        ) -> Result<Vec<$crate::model::Destination>, $crate::RegistryError> {
            self.read(|c| $crate::destinations::of_group(c, group))
        }

        /// Whether `group` may send to (`channel_type`, `platform_id`): exact match.
        pub fn is_allowed_destination(
            &self,
            group: &::ironclaw_contract::ids::AgentGroupId,
            channel_type: &str,
            platform_id: &str,
        ) -> Result<bool, $crate::RegistryError> {
            self.read(|c| $crate::destinations::is_allowed(c, group, channel_type, platform_id))
        }

        /// The session `id`, if it exists.
        pub fn session(
            &self,
            id: &::ironclaw_contract::ids::SessionId,
        ) -> Result<Option<$crate::model::Session>, $crate::RegistryError> {
            self.read(|c| $crate::sessions::get(c, id))
        }

        /// All sessions, sorted by id.
        pub fn sessions(&self) -> Result<Vec<$crate::model::Session>, $crate::RegistryError> {
            self.read($crate::sessions::list)
        }

        /// The session a message on (`agent_group`, `messaging_group`, `thread`) belongs
        /// to under `mode`, if one exists. Never creates, never refreshes `last_active`,
        /// never returns a session created under another mode.
        pub fn find_session(
            &self,
            agent_group: &::ironclaw_contract::ids::AgentGroupId,
            messaging_group: &::ironclaw_contract::ids::MessagingGroupId,
            thread: Option<&str>,
            mode: ::ironclaw_contract::enums::SessionMode,
        ) -> Result<Option<$crate::model::Session>, $crate::RegistryError> {
            self.read(|c| $crate::sessions::find(c, agent_group, messaging_group, thread, mode))
        }

        /// Whether `user` may use `group`, and why: owner, then
        /// global admin, then admin scoped to `group`, then member; first match wins.
        pub fn access(
            &self,
            user: &::ironclaw_contract::ids::UserId,
            group: &::ironclaw_contract::ids::AgentGroupId,
        ) -> Result<$crate::model::Access, $crate::RegistryError> {
            self.read(|c| $crate::access::access(c, user, group))
        }

        /// Whether `user` may decide (approve / reject) changes to `group`: owner,
        /// global admin, or admin scoped to `group`. Members never decide; sandbox
        /// principals never decide.
        pub fn may_decide(
            &self,
            user: &::ironclaw_contract::ids::UserId,
            group: &::ironclaw_contract::ids::AgentGroupId,
        ) -> Result<bool, $crate::RegistryError> {
            self.read(|c| $crate::access::may_decide(c, user, group))
        }

        /// Whether `user` is an owner or a global admin (who may create agent groups).
        pub fn is_owner_or_global_admin(
            &self,
            user: &::ironclaw_contract::ids::UserId,
        ) -> Result<bool, $crate::RegistryError> {
            self.read(|c| $crate::access::is_owner_or_global_admin(c, user))
        }

        /// Whether `user` holds the owner role.
        pub fn is_owner(
            &self,
            user: &::ironclaw_contract::ids::UserId,
        ) -> Result<bool, $crate::RegistryError> {
            self.read(|c| $crate::access::is_owner(c, user))
        }
    };
}

pub(crate) use read_methods;
