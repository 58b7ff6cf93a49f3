//! Creates CloudFront distributions on behalf of users and drives their deletion to
//! completion in the background.
//!
//! - `api`: the REST API, one module per resource.
//! - `lifecycle`: the state machine, a pure function from a stored row and what CloudFront
//!   returned to the next action.
//! - `store`: Postgres queries.
//! - `worker`: the claim loop that drives rows to completion.
//! - `cloudfront`: the SDK client and the classes of CloudFront errors.
//! - `simulator`: a strict CloudFront control-plane server for tests and local runs.
//! - `live`: history notifications fanned out to watch streams.
//! - `webhooks`: signed lifecycle notifications from a durable outbox.
//! - `admin`: the operator commands.
//! - `adopt`: taking over existing distributions, and the account sweep.

pub mod admin;
pub mod adopt;
pub mod api;
pub mod app;
pub mod bench;
pub mod cli;
pub mod cloudfront;
pub mod config;
pub mod lifecycle;
pub mod live;
pub mod simulator;
pub mod spec;
pub mod store;
pub mod telemetry;
pub mod webhooks;
pub mod worker;
