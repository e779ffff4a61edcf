//! `zoom-relay replay`: the command line of `relay-replay`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use chrono::Utc;
use relay_app::Settings;
use relay_core::broker::Topology;
use relay_replay::request::{
    DEFAULT_RATE, Filter, Options, Request, Source, Target, new_job_id, parse_time, redact_url,
};
use relay_replay::{Environment, Job};
use secrecy::SecretString;

#[derive(clap::Args)]
#[command(after_help = "See docs/replay.md for a staging walkthrough.")]
pub struct ReplayArgs {
    /// Source: archived events received since this time (RFC 3339, or a duration ago: `2h`).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// With --since: until this time (default: now).
    #[arg(long, value_name = "TIME", requires = "since")]
    until: Option<String>,
    /// Source: a stage's dead-letter queue (plan, download, assemble, upload, cleanup).
    #[arg(long, value_name = "STAGE")]
    from_dlq: Option<String>,
    /// Source: a JSON-lines file written by --to-file.
    #[arg(long, value_name = "PATH")]
    from_file: Option<PathBuf>,

    /// Only this account's events (our name for it).
    #[arg(long)]
    account: Option<String>,
    /// Only these events (repeatable), e.g. recording.completed.
    #[arg(long = "event", value_name = "TYPE")]
    events: Vec<String>,
    /// Only this meeting's events (its uuid).
    #[arg(long, value_name = "UUID")]
    meeting: Option<String>,
    /// Dead letters only: only those that failed with this code (docs/failures.md).
    #[arg(long, value_name = "CODE")]
    error_code: Option<String>,
    /// Stop after this many matched events.
    #[arg(long, value_name = "N")]
    max: Option<u64>,

    /// Target: a (staging) ingress URL; each body is re-signed with the token in
    /// --secret-token-env and a fresh timestamp.
    #[arg(long, value_name = "URL")]
    to_url: Option<String>,
    /// The environment variable holding the target's secret token.
    #[arg(long, value_name = "VAR", requires = "to_url")]
    secret_token_env: Option<String>,
    /// Target: a (staging) broker, e.g. amqp://user:pass@staging:5672/%2f.
    #[arg(
        long,
        value_name = "URL",
        env = "ZOOM_RELAY_REPLAY_TO_AMQP",
        hide_env_values = true
    )]
    to_amqp: Option<String>,
    /// The target broker's amqp.namespace.
    #[arg(long, value_name = "PREFIX", requires = "to_amqp")]
    to_namespace: Option<String>,
    /// Our name for the account at the target broker, when staging names it differently.
    #[arg(long, value_name = "NAME", requires = "to_amqp")]
    to_account: Option<String>,
    /// Target: a JSON-lines file (created; bodies hold tokens: keep it private).
    #[arg(long, value_name = "PATH")]
    to_file: Option<PathBuf>,

    /// Send nothing; print what would be sent.
    #[arg(long)]
    dry_run: bool,
    /// Replayed events may delete cloud recordings (after a verified upload), as configured.
    #[arg(long)]
    allow_delete: bool,
    /// The target reprocesses meetings it already holds.
    #[arg(long)]
    force: bool,
    /// With --from-dlq plan: bind events queued without a binding (by a version before
    /// bindings) to the configured account whose Zoom account id they name.
    #[arg(long)]
    rebind: bool,
    /// At most this many events per second.
    #[arg(long, default_value_t = DEFAULT_RATE, value_name = "PER_SECOND")]
    rate: f64,
    /// Resume an interrupted job (its source, filters and target come from its state; a
    /// broker target's URL is given again with --to-amqp).
    #[arg(long, value_name = "JOB", conflicts_with_all = [
        "since", "until", "from_dlq", "from_file", "account", "events", "meeting", "error_code",
        "max", "to_url", "secret_token_env", "to_namespace", "to_account", "to_file", "dry_run",
        "allow_delete", "force", "rebind", "rate", "job",
    ])]
    resume: Option<String>,
    /// The new job's id (default: replay-<time>-<random>).
    #[arg(long, value_name = "JOB")]
    job: Option<String>,
    /// Where job states are kept (default: $XDG_STATE_HOME/zoom-relay/replay).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

pub async fn run(settings: &Settings, arguments: ReplayArgs) -> anyhow::Result<ExitCode> {
    let environment = Environment {
        amqp: settings.amqp.clone(),
        topology: Topology::new(&settings.amqp, &settings.pipeline.retry_delays()),
        accounts: settings
            .accounts
            .iter()
            .map(|account| (account.name.clone(), account.account_id.clone()))
            .collect(),
        state_dir: arguments
            .state_dir
            .clone()
            .unwrap_or_else(relay_replay::state::default_dir),
        target_amqp_url: arguments.to_amqp.clone().map(SecretString::from),
        secrets: Environment::env_secrets(),
        progress: true,
    };
    let job = match &arguments.resume {
        Some(job) => Job::Resume(job.clone()),
        None => Job::New(Box::new(request(&arguments)?)),
    };
    let shutdown = relay_core::shutdown::on_signal();
    let summary = relay_replay::run(job, &environment, shutdown).await?;
    if let Some(plan) = &summary.plan {
        plan.print();
    }
    println!(
        "{}",
        serde_json::json!({ "command": "replay", "replay": summary })
    );
    Ok(if summary.succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn request(arguments: &ReplayArgs) -> anyhow::Result<Request> {
    let now = Utc::now();
    let source = match (&arguments.since, &arguments.from_dlq, &arguments.from_file) {
        (Some(since), None, None) => Source::Archive {
            since: parse_time(since, now)?,
            until: match &arguments.until {
                Some(until) => parse_time(until, now)?,
                None => now,
            },
        },
        (None, Some(stage), None) => Source::DeadLetters {
            stage: stage.clone(),
        },
        (None, None, Some(path)) => Source::File { path: path.clone() },
        (None, None, None) => {
            bail!("choose a source: --since (the archive), --from-dlq STAGE or --from-file PATH")
        }
        _ => bail!("choose one source: --since, --from-dlq or --from-file"),
    };
    let targets = [
        arguments.to_url.is_some(),
        arguments.to_amqp.is_some(),
        arguments.to_file.is_some(),
    ];
    let target = match targets.iter().filter(|chosen| **chosen).count() {
        0 => Target::OwnStage,
        1 => {
            if let Some(url) = &arguments.to_url {
                Target::Url {
                    url: url.clone(),
                    secret_token_env: arguments
                        .secret_token_env
                        .clone()
                        .context("--to-url needs --secret-token-env VAR")?,
                }
            } else if let Some(url) = &arguments.to_amqp {
                Target::Amqp {
                    url: redact_url(url),
                    namespace: arguments.to_namespace.clone().unwrap_or_default(),
                    account: arguments.to_account.clone(),
                }
            } else {
                Target::File {
                    path: arguments.to_file.clone().unwrap_or_default(),
                }
            }
        }
        _ => bail!("choose one target: --to-url, --to-amqp or --to-file"),
    };
    Ok(Request {
        job: arguments.job.clone().unwrap_or_else(|| new_job_id(now)),
        source,
        filter: Filter {
            account: arguments.account.clone(),
            events: arguments.events.clone(),
            meeting: arguments.meeting.clone(),
            error_code: arguments.error_code.clone(),
            max: arguments.max,
        },
        target,
        options: Options {
            dry_run: arguments.dry_run,
            allow_delete: arguments.allow_delete,
            force: arguments.force,
            rebind: arguments.rebind,
            rate: arguments.rate,
        },
    })
}
