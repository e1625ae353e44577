//! specaudit-alarmer (work in progress)
pub mod alarm;
pub mod conditions;
pub mod engine;
pub mod glob;
pub mod notify;
pub mod routes;
pub mod rules;
pub mod selector;
pub mod waivers;
pub mod window;
