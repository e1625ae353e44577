//! Notifications: payloads, signatures, delivery with retries, and the dispatcher that
//! orders them per alarm and logs each transition once its receivers took it.

pub mod deliver;
pub mod dispatch;
pub mod payload;
pub mod sign;
