//! The agent's tool catalog, as both sides must know it: the sandbox offers tools by
//! these names, and the gateway refuses `enabled_tools` changes naming anything else.

/// Always offered, whatever the agent group enables: the agent must always be able to
/// ask a human, and to ask for a capability instead of acquiring it.
pub const MANDATORY_TOOLS: &[&str] = &["request_capability_change", "ask_user_question"];

/// Offered when the agent group enables them.
pub const OPTIONAL_TOOLS: &[&str] = &[
    "send_message",
    "list_destinations",
    "read_file",
    "write_file",
    "list_dir",
    "schedule_task",
    "list_tasks",
    "cancel_task",
    "read_persona",
];

/// Names that would let an agent change itself or act outside the gateway. No tool may
/// be registered, offered or enabled under these names.
pub const FORBIDDEN_TOOL_NAMES: &[&str] = &[
    "set_persona",
    "set_enabled_tools",
    "install_package",
    "install_packages",
    "add_mount",
    "set_permissions",
    "grant_role",
    "add_member",
    "self_edit",
    "edit_self",
    "approve_change",
    "decide_change",
    "exec",
    "shell",
    "run",
    "script",
];

pub fn is_mandatory(name: &str) -> bool {
    MANDATORY_TOOLS.contains(&name)
}

/// A tool this build knows (mandatory or optional).
pub fn is_known(name: &str) -> bool {
    is_mandatory(name) || OPTIONAL_TOOLS.contains(&name)
}

pub fn is_forbidden(name: &str) -> bool {
    FORBIDDEN_TOOL_NAMES.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_and_forbidden_names_are_disjoint() {
        for t in MANDATORY_TOOLS.iter().chain(OPTIONAL_TOOLS) {
            assert!(!is_forbidden(t), "{t}");
            assert!(is_known(t));
        }
        assert!(!is_known("set_persona"));
    }
}
