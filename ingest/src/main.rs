fn main() -> std::process::ExitCode {
    runtime::launch(ingest::run)
}
