//! Operator names and the `operator:<name>` principal they map to.

use ironclaw_contract::ids::UserId;

use crate::IdentityError;

/// The [`UserId`] namespace of operators: `operator:<name>`.
pub const OPERATOR_NAMESPACE: &str = "operator";

/// The longest accepted operator name, in bytes.
pub const MAX_NAME_LEN: usize = 32;

/// Checks `name` against `[a-z0-9][a-z0-9_-]{0,31}`.
///
/// Lowercase only, so `Alice` and `alice` can never be two different principals in an
/// audit log; no leading punctuation, so a name never looks like a CLI flag.
pub fn validate_name(name: &str) -> Result<(), IdentityError> {
    let invalid = |reason: &'static str| IdentityError::InvalidName {
        // Truncated so a pasted token (or any other blob) cannot end up whole in an
        // error message or a log line.
        name: name.chars().take(MAX_NAME_LEN + 8).collect(),
        reason,
    };
    let bytes = name.as_bytes();
    let Some(&first) = bytes.first() else {
        return Err(invalid("must not be empty"));
    };
    if bytes.len() > MAX_NAME_LEN {
        return Err(invalid("is longer than 32 bytes"));
    }
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return Err(invalid("must start with a lowercase letter or a digit"));
    }
    let ok = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-';
    if !bytes.iter().all(ok) {
        return Err(invalid(
            "may contain only lowercase ASCII letters, digits, '_' and '-'",
        ));
    }
    Ok(())
}

/// The principal of operator `name`: `operator:<name>`.
pub fn operator_user_id(name: &str) -> Result<UserId, IdentityError> {
    validate_name(name)?;
    // Every byte a valid name may hold is allowed in a user id, and
    // `operator:` + 32 bytes is far below the user-id length limit, so this cannot fail
    // in practice; the error is still mapped rather than unwrapped.
    UserId::new(format!("{OPERATOR_NAMESPACE}:{name}")).map_err(|_| IdentityError::InvalidName {
        name: name.to_owned(),
        reason: "does not form a valid user id",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn name_validation_table() {
        let table: &[(&str, bool)] = &[
            ("alice", true),
            ("a", true),
            ("0", true),
            ("9lives", true),
            ("ops-team_2", true),
            ("a-", true),
            ("a_", true),
            (&"a".repeat(32), true),
            (&"a".repeat(33), false),
            ("", false),
            ("Alice", false),
            ("aliCe", false),
            ("-alice", false),
            ("_alice", false),
            ("al ice", false),
            (" alice", false),
            ("alice\n", false),
            ("al.ice", false),
            ("al:ice", false),
            ("al/ice", false),
            ("alice@example.com", false),
            ("operator:alice", false),
            ("ålice", false),
            ("a\0", false),
        ];
        for (name, ok) in table {
            assert_eq!(validate_name(name).is_ok(), *ok, "{name:?}");
            assert_eq!(operator_user_id(name).is_ok(), *ok, "{name:?}");
        }
        assert_eq!(
            operator_user_id("alice").unwrap().as_str(),
            "operator:alice"
        );
    }

    #[test]
    fn invalid_name_errors_are_bounded() {
        let long = "X".repeat(10_000);
        let msg = validate_name(&long).unwrap_err().to_string();
        assert!(msg.len() < 200, "{msg}");
    }

    proptest! {
        #[test]
        fn validation_matches_the_regex(s in "\\PC{0,40}") {
            let expected = !s.is_empty()
                && s.len() <= 32
                && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
                && (s.as_bytes()[0].is_ascii_lowercase() || s.as_bytes()[0].is_ascii_digit());
            prop_assert_eq!(validate_name(&s).is_ok(), expected);
            if expected {
                let u = operator_user_id(&s).unwrap();
                prop_assert_eq!(u.namespace(), Some(OPERATOR_NAMESPACE));
            }
        }

        #[test]
        fn valid_names_always_form_user_ids(s in "[a-z0-9][a-z0-9_-]{0,31}") {
            prop_assert_eq!(operator_user_id(&s).unwrap().to_string(), format!("operator:{s}"));
        }
    }
}
