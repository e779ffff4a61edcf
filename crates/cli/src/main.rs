//! `zoom-relay`: parses the command line, loads the settings, sets up logging, and hands the
//! chosen components to the composition root (`relay_app::App`). Nothing else lives here.

mod replay;
mod sim;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use relay_app::{App, Component, Oneshot, Settings};
use relay_core::shutdown;
use relay_reconcile::Handover;
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
    /// Receive Zoom's events over the WebSocket subscriptions (`[[websocket.subscriptions]]`)
    /// and store them in RabbitMQ, as the ingress does; see docs/websocket.md.
    Websocket,
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
    /// List every account's recordings through Zoom's API and hand over what webhooks did not
    /// bring; every `reconcile.interval`, or one pass with `--once` (for a cron job).
    Reconcile {
        #[arg(long)]
        once: bool,
    },
    /// Reconcile one account over a fixed range of dates (a new installation, an incident).
    Backfill {
        #[arg(long)]
        account: String,
        /// First day (UTC), YYYY-MM-DD.
        #[arg(long)]
        from: chrono::NaiveDate,
        /// Last day (UTC), YYYY-MM-DD, inclusive.
        #[arg(long)]
        to: chrono::NaiveDate,
        /// Print what would be handed over (meetings, files, bytes); send nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Hand one meeting over now: a uuid, or a numeric meeting id (every past instance).
    Import {
        #[arg(long)]
        account: String,
        #[arg(long)]
        meeting: String,
        /// Also when it is archived already.
        #[arg(long)]
        force: bool,
    },
    /// Serve the status page and JSON API on `[status] listen`; with --summary or --meeting,
    /// print the same facts for a terminal (--json for scripts) and exit.
    Status(relay_status::cli::StatusArgs),
    /// Send archived or dead-lettered events again: to a staging ingress or broker, a file,
    /// or (dead letters) back into their stage. See docs/replay.md.
    Replay(Box<replay::ReplayArgs>),
    /// POST each account's notification_url when a meeting landed or failed for good, signed
    /// the Standard Webhooks way (docs/notifications.md).
    Notifications,
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
        Command::Websocket => &[Component::Websocket],
        Command::Plan => &[Component::Plan],
        Command::Download => &[Component::Download],
        Command::Assemble => &[Component::Assemble],
        Command::Upload => &[Component::Upload],
        Command::Cleanup => &[Component::Cleanup],
        Command::Notifications => &[Component::Notifications],
        Command::Reconcile { once: false } => &[Component::Reconcile],
        Command::Reconcile { once: true } => {
            let oneshot = Oneshot::connect(&settings).await.context("starting")?;
            let summaries = oneshot.reconciler.once().await;
            relay_reconcile::println_summary("reconcile", &summaries);
            let failed = summaries.iter().any(|summary| summary.error.is_some());
            return Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            });
        }
        Command::Backfill {
            account,
            from,
            to,
            dry_run,
        } => {
            relay_reconcile::Reconciler::check_range(from, to)?;
            let oneshot = Oneshot::connect(&settings).await.context("starting")?;
            let reconciler = &oneshot.reconciler;
            let account = reconciler.account(&account)?;
            let handover = if dry_run {
                Handover::DryRun
            } else {
                Handover::Send(relay_core::Origin::Reconcile)
            };
            let summary = reconciler.pass(account, from, to, handover, None).await?;
            relay_reconcile::println_summary("backfill", &[summary]);
            return Ok(ExitCode::SUCCESS);
        }
        Command::Import {
            account,
            meeting,
            force,
        } => {
            let oneshot = Oneshot::connect(&settings).await.context("starting")?;
            let reconciler = &oneshot.reconciler;
            let account = reconciler.account(&account)?;
            let summary = reconciler.import(account, &meeting, force).await?;
            relay_reconcile::println_summary("import", &[summary]);
            return Ok(ExitCode::SUCCESS);
        }
        Command::Status(arguments) if arguments.is_query() => {
            let inputs = relay_status::cli::Inputs {
                status: &settings.status,
                amqp: &settings.amqp,
                retry_delays: &settings.pipeline.retry_delays(),
                accounts: &settings.accounts,
            };
            return Ok(relay_status::cli::run(&arguments, inputs).await);
        }
        Command::Status(_) => &[Component::Status],
        Command::Replay(arguments) => return replay::run(&settings, *arguments).await,
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

/// Prints `ok` or `FAILED` per account with Zoom's reason; the scopes its features lack (a
/// missing optional one names the features it disables) and the granted scopes no configured
/// feature uses (least privilege). Fails when an account cannot work. Never prints a secret.
async fn check(settings: &Settings) -> anyhow::Result<ExitCode> {
    if settings.accounts.is_empty() {
        println!("no [[accounts]] configured");
        return Ok(ExitCode::FAILURE);
    }
    // A user-managed app's refresh token rotates on use: `check` uses the shared chain too.
    let staging = relay_pipeline::Staging::new(
        &settings.pipeline.staging,
        &settings.pipeline.staging_options,
    )
    .context("opening staging")?;
    let mut healthy = true;
    for account in &settings.accounts {
        let needs = relay_pipeline::features::needs(account);
        let wanted: Vec<Capability> = needs.iter().map(|need| need.capability).collect();
        let client = ZoomClient::new(
            &settings.zoom,
            &account.name,
            relay_pipeline::oauth::credentials(account, Some(&staging)),
        )
        .context("building the Zoom client")?;
        let report = client.check(&wanted).await;
        let scopes =
            relay_pipeline::features::ScopeReport::new(&needs, &client.tokens().outcome().scopes);
        match &report.result {
            Ok(()) if scopes.missing.is_empty() => println!("ok      {}", report.account),
            Ok(()) => println!("FAILED  {}: missing scopes", report.account),
            Err(reason) => println!("FAILED  {}: {reason}", report.account),
        }
        if report.result.is_ok() {
            for line in scopes.lines() {
                println!("        {line}");
            }
            // Which listing reconciliation will use for this account.
            let today = chrono::Utc::now().date_naive();
            match client.account_recordings(today, today).await {
                Ok(_) => println!("        listing: account-wide"),
                Err(error) => {
                    println!("        listing: user by user (account-wide refused: {error})")
                }
            }
        }
        healthy &= report.result.is_ok() && scopes.missing.is_empty();
    }
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
