//! Reading events back: cursors, filters, the poll merger and subscriptions.

pub mod cursor;
pub mod filter;
pub mod poll;
pub mod subscribe;
