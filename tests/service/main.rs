//! Integration tests of the whole service against a real Postgres and a real CloudFront
//! peer (the simulator, or moto).

mod harness;

mod auth;
mod bad_input;
mod end_to_end;
mod moto;
mod openapi;
mod operability;
mod worker;
