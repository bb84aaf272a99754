//! The `stockd` program; everything lives in the library (`cli::main`).

fn main() -> std::process::ExitCode {
    stockd::cli::main()
}
