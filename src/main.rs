use clap::Parser;

use cloudfront_lifecycle::cli::{self, Cli};
use cloudfront_lifecycle::telemetry;

/// mimalloc rather than the system allocator, because each API request makes many small,
/// short-lived allocations (headers, JSON, rows), where glibc's malloc took about a tenth of
/// the service's CPU under load (perf, `bench/api.sh`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    telemetry::init_logging(cli.log.log_format);

    let code = match cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    };
    telemetry::shutdown_tracing();
    code
}
