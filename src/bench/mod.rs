//! Benchmark commands that measure the service against the approaches people use instead.
//! Each starts what it measures on loopback, runs a bounded load and prints a table; the
//! results and how to reproduce them are in docs/benchmarks.md.

pub mod lag;

use clap::{Args, Subcommand};

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: BenchCommand,
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Detection lag and reads per deletion of each recheck schedule, against the simulator
    /// with field-like deploy times.
    Lag(lag::LagArgs),
}

/// Runs a benchmark command.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.command {
        BenchCommand::Lag(args) => lag::run(args).await,
    }
}

/// Returns the `q` quantile (0 to 1) of sorted values by the nearest-rank method, or NaN for
/// no values.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}
