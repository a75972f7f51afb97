//! The host data model: agent groups, messaging groups, wirings, users, roles, members, destinations, sessions.
