fn main() -> std::process::ExitCode {
    runtime::launch(enricher::run)
}
