//! `zoom-relay`: parses the command line, loads the settings, sets up logging, and hands the
//! chosen components to the composition root (`relay_app::App`). Nothing else lives here.

mod sim;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use relay_app::{App, Component, Settings};
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
    /// Turn recording events into one download task per wanted file.
    Plan,
    /// Download files into staging.
    Download,
    /// Write each meeting's manifest once its files are staged (and join segments, if enabled).
    Assemble,
    /// Copy staged files and manifests to each account's destination, verified.
    Upload,
    /// Delete cloud recordings whose upload is verified (accounts with delete_after_upload).
    Cleanup,
    /// The ingress and every stage in one process: a whole single-machine deployment.
    Run,
    /// Check every account's credentials against Zoom: token, a cheap read, needed scopes.
    Check,
    /// Run the Zoom simulator, or send it events (see `zoom-relay sim --help`).
    Sim(sim::SimArgs),
    /// Print the effective configuration as TOML, secrets and credentials redacted.
    Config,
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let settings = Settings::load(cli.config.as_deref()).context("loading configuration")?;
    relay_core::telemetry::init(&settings.log);
    let components: &[Component] = match cli.command {
        Command::Ingress => &[Component::Ingress],
        Command::Plan => &[Component::Plan],
        Command::Download => &[Component::Download],
        Command::Assemble => &[Component::Assemble],
        Command::Upload => &[Component::Upload],
        Command::Cleanup => &[Component::Cleanup],
        Command::Run => &Component::ALL,
        Command::Check => return check(&settings).await,
        Command::Sim(arguments) => {
            return sim::run(settings, arguments)
                .await
                .map(|()| ExitCode::SUCCESS);
        }
        Command::Config => {
            print!("{}", settings.to_redacted_toml());
            return Ok(ExitCode::SUCCESS);
        }
    };
    let app = App::build(settings, components).context("starting")?;
    app.run(shutdown::on_signal()).await?;
    Ok(ExitCode::SUCCESS)
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
        let mut wanted = vec![Capability::ReadRecordings, Capability::ReadUsers];
        if account.deletes() {
            wanted.push(Capability::DeleteRecordings);
        }
        let client = ZoomClient::new(&settings.zoom, &account.name, account.credentials())
            .context("building the Zoom client")?;
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
