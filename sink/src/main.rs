use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    runtime::init_tracing();
    let config = sink::Config::parse();
    match sink::run(config, runtime::shutdown_on_signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            std::process::ExitCode::FAILURE
        }
    }
}
