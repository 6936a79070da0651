use std::fmt::Display;
use std::future::Future;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

/// What an operator can do about an error that stopped a binary: printed
/// after the error itself, apart from it, since the error says what failed
/// and the remedy depends on how the binary was run.
pub trait Hint {
    /// The remedy, where the binary knows one.
    fn hint(&self) -> Option<String> {
        None
    }
}

/// The body of every stage's `main`: logging, configuration from flags and
/// environment, `run` until SIGINT/SIGTERM, and the error (with its hint)
/// as the exit code.
pub fn launch<C, F, Fut, E>(run: F) -> ExitCode
where
    C: clap::Parser,
    F: FnOnce(C, CancellationToken) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Display + Hint,
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
            if let Some(hint) = error.hint() {
                tracing::error!("what to do: {hint}");
            }
            ExitCode::FAILURE
        }
    }
}
