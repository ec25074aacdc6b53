//! The `authledger` binary: parses the command line and runs the chosen command.

/// mimalloc rather than the system allocator: much of what the server allocates is freed on
/// another thread (events decoded on one thread and applied on another, replies built on an
/// actor's thread and sent from a worker's), which glibc's allocator serves slowly (ADR 0015).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    authledger::cli::main()
}
