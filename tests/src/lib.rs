//! End-to-end tests live in `tests/`; they need the local stack (`deploy/local/stack up`).
