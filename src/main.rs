//! The `authledger` binary: parses the command line and runs the chosen command.

fn main() -> std::process::ExitCode {
    authledger::cli::main()
}
