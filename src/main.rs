fn main() -> std::process::ExitCode {
    optdesk::cli::main()
}
