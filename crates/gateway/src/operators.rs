//! Operators' lifecycle: minting and revoking an operator's token together with its
//! registry role, audited, as one flow.
//!
//! Three stores take part (identity's token file, the registry, the audit chain) and
//! none of them may end up ahead of the others in a way that matters: a token whose
//! role or audit record could not be written is revoked again before the error is
//! returned (its secret was never shown, so nobody holds it), and a revoked token
//! takes its roles with it, so a later token under the same name starts with only the
//! role it is minted with.
//!
//! The rule "only owners manage tokens" lives here, so the API, the daemon's first
//! start and any later surface apply the same one.
//!
//! Not here: authentication (the API maps a bearer token to a principal), the token
//! file's format (`ironclaw-identity`), or who is an owner (the registry).

use ironclaw_audit::{AuditError, AuditEvent, AuditLog};
use ironclaw_contract::ids::UserId;
use ironclaw_identity::{IdentityError, SecretToken, TokenRecord, TokenStore};
use ironclaw_registry::{Registry, RegistryError, Role, RoleGrant, User};

/// Why an operator could not be minted or revoked.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("{0} is not an owner; only owners manage tokens")]
    NotOwner(UserId),
    #[error("you cannot revoke the token you are using; another owner must")]
    OwnToken,
    #[error("no active token named {0}")]
    NoSuchToken(String),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("audit log: {0}")]
    Audit(#[from] AuditError),
}

/// The stores an operator's lifecycle touches.
pub struct Operators<'a> {
    pub tokens: &'a TokenStore,
    pub registry: &'a Registry,
    pub audit: &'a AuditLog,
}

impl Operators<'_> {
    /// An owner (`by`) mints a token for a new operator `name` with `role`. The secret
    /// is returned once, to be shown once.
    pub fn mint(
        &self,
        by: &UserId,
        name: &str,
        role: Role,
    ) -> Result<(TokenRecord, SecretToken), OperatorError> {
        self.require_owner(by)?;
        self.enroll(name, role, Some(by), by)
    }

    /// The first owner of a state dir nobody can sign in to yet, minted by the daemon
    /// itself (`daemon`), so no owner check can apply.
    pub fn mint_first_owner(
        &self,
        daemon: &UserId,
    ) -> Result<(TokenRecord, SecretToken), OperatorError> {
        self.enroll("owner", Role::Owner, None, daemon)
    }

    /// An owner (`by`, signed in as `by_name`) revokes the active token `name`, and
    /// the operator's roles with it.
    pub fn revoke(&self, by: &UserId, by_name: &str, name: &str) -> Result<(), OperatorError> {
        self.require_owner(by)?;
        if name == by_name {
            return Err(OperatorError::OwnToken);
        }
        if !self.tokens.revoke(name, by)? {
            return Err(OperatorError::NoSuchToken(name.to_owned()));
        }
        let principal = ironclaw_identity::operator_user_id(name)?;
        for grant in self.registry.roles_of(&principal)? {
            self.registry.revoke_role(&grant)?;
        }
        self.audit.append(AuditEvent::TokenRevoked {
            name: name.to_owned(),
            revoked_by: by.clone(),
        })?;
        Ok(())
    }

    fn require_owner(&self, who: &UserId) -> Result<(), OperatorError> {
        if self.registry.is_owner(who)? {
            Ok(())
        } else {
            Err(OperatorError::NotOwner(who.clone()))
        }
    }

    /// Token, registry user and role, audit record — or none of them usable.
    fn enroll(
        &self,
        name: &str,
        role: Role,
        minted_by: Option<&UserId>,
        audited_by: &UserId,
    ) -> Result<(TokenRecord, SecretToken), OperatorError> {
        let (record, secret) = self.tokens.create(name, minted_by)?;
        let principal = record.principal.clone();
        let rest = (|| {
            self.registry.put_user(User {
                id: principal.clone(),
                kind: "operator".into(),
                display_name: name.to_owned(),
            })?;
            self.registry.grant_role(&RoleGrant {
                user_id: principal.clone(),
                role,
                scope: None,
            })?;
            self.audit.append(AuditEvent::TokenCreated {
                name: name.to_owned(),
                principal: principal.clone(),
                created_by: audited_by.clone(),
            })?;
            Ok::<_, OperatorError>(())
        })();
        if let Err(e) = rest {
            // A token whose secret was never shown must not stay usable. If this revoke
            // fails too, the first error is the one to report; the token file still
            // holds a token nobody has seen.
            if let Err(undo) = self.tokens.revoke(name, audited_by) {
                tracing::error!(token = %name, error = %undo, "revoking a half-minted token failed");
            }
            return Err(e);
        }
        Ok((record, secret))
    }
}
