//! Integration tests of the whole service against a real Postgres and a real CloudFront
//! peer (the simulator, or moto).

mod harness;

mod adaptive;
mod adoption;
mod adversarial;
mod api_contract;
mod auth;
mod bad_input;
mod budget;
mod contract;
mod end_to_end;
mod failure_modes;
mod moto;
mod openapi;
mod operability;
mod read_connections;
mod scale;
mod worker;
