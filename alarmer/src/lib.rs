//! specaudit-alarmer: threshold windows over the live assertion and heartbeat streams,
//! notifying on-call by webhook and Alertmanager (DESIGN.md section 7).
//!
//! Not built yet: this crate holds its place in the workspace layout. No binary is shipped
//! until rule evaluation and notification work end to end.
