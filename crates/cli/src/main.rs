//! `zoom-relay`: parses the command line, loads the settings, sets up logging, and hands over to
//! one component's library. Nothing else lives here.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use relay_core::Settings;
use relay_core::broker::Broker;
use relay_core::shutdown;

#[derive(Parser)]
#[command(
    name = "zoom-relay",
    version,
    about = "Moves Zoom cloud recordings off Zoom's cloud."
)]
struct Cli {
    /// TOML configuration file (default: ./zoom-relay.toml when present). Every key can be
    /// overridden by an environment variable ZOOM_RELAY__<SECTION>__<KEY>.
    #[arg(long, short, global = true, env = "ZOOM_RELAY_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Receive Zoom event notifications and store them in RabbitMQ.
    Ingress,
    /// Print the effective configuration, secrets redacted.
    Config,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load(cli.config.as_deref()).context("loading configuration")?;
    relay_core::telemetry::init(&settings.log);
    match cli.command {
        Command::Ingress => run_ingress(settings).await,
        Command::Config => {
            println!("{settings:#?}");
            Ok(())
        }
    }
}

async fn run_ingress(settings: Settings) -> anyhow::Result<()> {
    let shutdown = shutdown::on_signal();
    let broker = Broker::start(&settings.amqp, shutdown.clone());
    let ingress = relay_ingress::Ingress::build(&settings, broker)
        .with_context(|| format!("binding {}", settings.ingress.listen))?;
    ingress.run(shutdown).await.context("serving")
}
