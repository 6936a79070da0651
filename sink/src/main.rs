fn main() -> std::process::ExitCode {
    runtime::launch(sink::run)
}
