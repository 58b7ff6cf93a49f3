//! A strict, in-memory CloudFront control-plane server speaking the REST-XML API.
//! (Placeholder surface until the full simulator lands.)

use std::time::Duration;

#[derive(Clone, Debug)]
pub enum DeployTime {
    Fixed(Duration),
}

#[derive(Clone, Debug)]
pub struct SimulatorSettings {
    pub deploy_time: DeployTime,
}

#[derive(Clone)]
pub struct Simulator;

pub struct SimulatorServer {
    endpoint: String,
}

impl SimulatorServer {
    pub fn endpoint(&self) -> String {
        self.endpoint.clone()
    }
}

impl Simulator {
    pub fn new(_settings: SimulatorSettings) -> Self {
        Simulator
    }

    pub async fn spawn(&self, listener: tokio::net::TcpListener) -> std::io::Result<SimulatorServer> {
        let address = listener.local_addr()?;
        Ok(SimulatorServer {
            endpoint: format!("http://{address}"),
        })
    }
}
