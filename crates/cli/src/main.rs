//! `zoom-relay`: parses the command line, loads the settings, sets up logging, and hands over to
//! one component's library. Nothing else lives here.

mod sim;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use relay_core::Settings;
use relay_core::broker::Broker;
use relay_core::shutdown;
use zoom_api::ZoomClient;
use zoom_api::client::Capability;

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
    /// Check every account's credentials against Zoom: token, a cheap read, needed scopes.
    Check,
    /// Run the Zoom simulator, or send it events (see `zoom-relay sim --help`).
    Sim(sim::SimArgs),
    /// Print the effective configuration, secrets redacted.
    Config,
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let settings = Settings::load(cli.config.as_deref()).context("loading configuration")?;
    relay_core::telemetry::init(&settings.log);
    match cli.command {
        Command::Ingress => run_ingress(settings).await.map(|()| ExitCode::SUCCESS),
        Command::Check => check(&settings).await,
        Command::Sim(arguments) => sim::run(settings, arguments)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Config => {
            println!("{settings:#?}");
            Ok(ExitCode::SUCCESS)
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

/// Prints `ok` or `FAILED` per account with Zoom's reason and the scopes the enabled features
/// lack; fails when any account does. Never prints a secret.
async fn check(settings: &Settings) -> anyhow::Result<ExitCode> {
    if settings.accounts.is_empty() {
        println!("no [[accounts]] configured");
        return Ok(ExitCode::FAILURE);
    }
    let mut healthy = true;
    for account in &settings.accounts {
        let wanted = [Capability::ReadRecordings, Capability::ReadUsers];
        let client =
            ZoomClient::new(&settings.zoom, account).context("building the Zoom client")?;
        let report = client.check(&wanted).await;
        match &report.result {
            Ok(()) if report.missing.is_empty() => println!("ok      {}", report.account),
            Ok(()) => println!("FAILED  {}: missing scopes", report.account),
            Err(reason) => println!("FAILED  {}: {reason}", report.account),
        }
        for capability in &report.missing {
            println!("        needs {}", capability.describe());
        }
        healthy &= report.result.is_ok() && report.missing.is_empty();
    }
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
