//! Operator identity: named principals with hashed API tokens.
