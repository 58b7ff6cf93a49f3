//! Creates CloudFront distributions on behalf of users and drives their deletion to
//! completion in the background.

pub mod simulator;
