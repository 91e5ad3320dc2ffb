//! The `wgpt` binary: parse the command line, run it, turn errors into a message and exit code 1.

use clap::Parser;

fn main() {
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("info,wgpu_core=warn,wgpu_hal=warn,naga=warn"),
    )
    .format_timestamp(None)
    .init();
    let cli = wgpt::cli::Cli::parse();
    match wgpt::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}
