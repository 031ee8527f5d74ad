use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    akira_workerctl::cli::main().await
}
