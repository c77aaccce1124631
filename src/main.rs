use clap::Parser;

fn main() {
    let cli = pretext::cli::Cli::parse();
    if let Err(e) = pretext::cli::run(cli) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
