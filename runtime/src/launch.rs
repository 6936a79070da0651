use std::fmt::Display;
use std::future::Future;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

/// The body of every stage's `main`: logging, configuration from flags and
/// environment, `run` until SIGINT/SIGTERM, and the error as the exit code.
pub fn launch<C, F, Fut, E>(run: F) -> ExitCode
where
    C: clap::Parser,
    F: FnOnce(C, CancellationToken) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Display,
{
    crate::init_tracing();
    let config = C::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!("starting the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async { run(config, crate::shutdown_on_signal()).await });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            ExitCode::FAILURE
        }
    }
}
