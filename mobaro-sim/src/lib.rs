//! A stand-in for Mobaro, the only party the pipeline's tests cannot reach.
//!
//! It deliberately shares no code with the pipeline: it builds webhooks and
//! records from Mobaro's documented shapes, so our parsing mistakes show.

pub mod api;
pub mod listing;
pub mod records;
pub mod webhooks;
