use clap::Parser;

use cloudfront_lifecycle::cli::{self, Cli};
use cloudfront_lifecycle::telemetry;

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
