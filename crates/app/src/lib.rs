//! The composition root of every zoom-relay process.
//!
//! - [`settings`]: the whole configuration tree, assembled from the sections each crate owns.
//! - [`App`]: builds what a process shares once — one broker connection, one metrics registry,
//!   one Zoom client per account (one token cache, one rate budget), one staging store — and
//!   starts the [`Component`]s asked for from one registration list ([`App::register`]).
//! - [`admin`]: every process's `/healthz`, `/readyz` and `/metrics`.
//! - [`notify`]: systemd's `READY=1`, watchdog pings while the broker connection is healthy,
//!   `STOPPING=1` (only under a `Type=notify` unit).
//!
//! The binary only parses the command line and picks components; tests build the same `App`.

pub mod admin;
pub mod notify;
pub mod settings;

use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use prometheus_client::registry::Registry;
use relay_core::broker::{Broker, StageName, Topology};
use relay_core::consumer::{self, BrokerOutbox, Stage};
use relay_core::metrics::StageMetrics;
use relay_core::shutdown::CancellationToken;
use relay_ingress::{Ingress, WebhookAccount};
use relay_pipeline::{Accounts, Shared, Staging, StartError as PipelineStartError};
use tokio::task::JoinSet;

pub use settings::{AdminSettings, Settings, SettingsError};

/// The configured accounts, as the Zoom simulator knows them (the first secret token signs).
pub fn sim_accounts(settings: &Settings) -> Vec<zoom_sim::SimAccount> {
    use secrecy::ExposeSecret;
    settings
        .accounts
        .iter()
        .map(|account| zoom_sim::SimAccount {
            name: account.name.clone(),
            account_id: account.account_id.clone(),
            client_id: account.credentials().client_id,
            client_secret: account
                .credentials()
                .client_secret
                .expose_secret()
                .to_owned(),
            secret_token: account
                .secret_tokens
                .first()
                .map(|token| token.expose_secret().to_owned())
                .unwrap_or_default(),
        })
        .collect()
}

/// What a process can run. `zoom-relay run` runs them all; each also has its own subcommand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Component {
    Ingress,
    Plan,
    Download,
    Assemble,
    Upload,
    Cleanup,
    /// Lists recordings through Zoom's API and hands over what webhooks did not bring.
    Reconcile,
    /// The status page, JSON API and status series (`[status] listen`).
    Status,
    /// Tells each account's `notification_url` when a meeting landed or failed for good.
    Notifications,
    /// Receives Zoom's events over the WebSocket subscriptions (`[[websocket.subscriptions]]`).
    Websocket,
}

impl Component {
    pub const ALL: [Component; 10] = [
        Self::Ingress,
        Self::Plan,
        Self::Download,
        Self::Assemble,
        Self::Upload,
        Self::Cleanup,
        Self::Reconcile,
        Self::Status,
        Self::Notifications,
        Self::Websocket,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ingress => "ingress",
            Self::Plan => "plan",
            Self::Download => "download",
            Self::Assemble => "assemble",
            Self::Upload => "upload",
            Self::Cleanup => "cleanup",
            Self::Reconcile => "reconcile",
            Self::Status => "status",
            Self::Notifications => "notifications",
            Self::Websocket => "websocket",
        }
    }

    /// Whether it needs the pipeline's shared parts (accounts, their Zoom clients, staging).
    fn uses_pipeline(self) -> bool {
        self.stage().is_some()
            || matches!(
                self,
                Self::Reconcile | Self::Notifications | Self::Websocket
            )
    }

    /// The pipeline stage this component consumes for, if it is one.
    pub fn stage(self) -> Option<StageName> {
        match self {
            Self::Ingress => None,
            Self::Plan => Some(StageName::Plan),
            Self::Download => Some(StageName::Download),
            Self::Assemble => Some(StageName::Assemble),
            Self::Upload => Some(StageName::Upload),
            Self::Cleanup => Some(StageName::Cleanup),
            Self::Reconcile => None,
            Self::Status => None,
            Self::Notifications => None,
            Self::Websocket => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("RabbitMQ did not answer within amqp.connect_timeout")]
    Broker,
    #[error("{component}: {source}")]
    Pipeline {
        component: &'static str,
        source: PipelineStartError,
    },
    #[error("binding {what} on {address}: {source}")]
    Bind {
        what: &'static str,
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
}

#[derive(Debug, thiserror::Error)]
#[error("{component} stopped: {reason}")]
pub struct RunError {
    pub component: &'static str,
    pub reason: String,
}

type Runner = Box<dyn FnOnce(CancellationToken) -> BoxFuture<'static, Result<(), RunError>> + Send>;

/// Each component's metric families, registered once in the process's registry.
struct Metrics {
    ingress: relay_ingress::Metrics,
    reconcile: relay_reconcile::Metrics,
    notifications: relay_notifications::Metrics,
    websocket: relay_websocket::Metrics,
    /// The status view, when the status component runs: its series are computed from it.
    status: Option<relay_status::StatusState>,
}

/// A process: its shared parts and the components it runs.
pub struct App {
    broker: Broker,
    broker_shutdown: CancellationToken,
    runners: Vec<(&'static str, Runner)>,
    ingress_port: Option<u16>,
    admin_port: u16,
    status_port: Option<u16>,
}

impl App {
    /// Builds the shared parts once and every component in `components`; binds the listeners.
    /// Must run inside a Tokio runtime (the broker's supervisor starts at once).
    pub fn build(settings: Settings, components: &[Component]) -> Result<Self, StartError> {
        let settings = Arc::new(settings);
        let broker_shutdown = CancellationToken::new();
        let topology = Topology::new(&settings.amqp, &settings.pipeline.retry_delays());
        let broker = Broker::start(&settings.amqp, topology, broker_shutdown.clone());
        let mut registry = Registry::default();
        let stage_metrics = StageMetrics::register(&mut registry);
        let ingress_metrics = relay_ingress::Metrics::register(&mut registry);
        let reconcile_metrics = relay_reconcile::Metrics::register(&mut registry);
        let notification_metrics = relay_notifications::Metrics::register(&mut registry);
        let websocket_metrics = relay_websocket::Metrics::register(&mut registry);
        let status = components.contains(&Component::Status).then(|| {
            let state = relay_status::StatusState::new(
                relay_status::state::fold_settings(&settings.status, &settings.accounts),
                broker.topology().clone(),
            );
            relay_status::metrics::register(&state, &mut registry);
            state
        });
        let registry = Arc::new(registry);

        let shared = if components.iter().any(|c| c.uses_pipeline()) {
            let pipeline_error = |source| StartError::Pipeline {
                component: "pipeline",
                source,
            };
            let staging = Staging::new(
                &settings.pipeline.staging,
                &settings.pipeline.staging_options,
            )
            .map_err(|error| pipeline_error(error.into()))?;
            Some(Shared {
                accounts: Accounts::build(&settings.accounts, &settings.zoom, Some(&staging))
                    .map_err(|error| pipeline_error(error.into()))?,
                staging,
                settings: Arc::new(settings.pipeline.clone()),
                metrics: stage_metrics,
            })
        } else {
            None
        };

        let mut app = Self {
            broker: broker.clone(),
            broker_shutdown,
            runners: Vec::new(),
            ingress_port: None,
            admin_port: 0,
            status_port: None,
        };
        let metrics = Metrics {
            ingress: ingress_metrics,
            reconcile: reconcile_metrics,
            notifications: notification_metrics,
            websocket: websocket_metrics,
            status,
        };
        for component in components {
            app.register(*component, &settings, shared.as_ref(), &metrics, &registry)?;
        }
        // Every process holding Zoom clients tells the status stream how each account fares.
        if let Some(shared) = &shared {
            let broker = app.broker.clone();
            let accounts = relay_status::report::pipeline_accounts(&shared.accounts);
            let interval = settings.status.report_interval;
            app.runners.push((
                "account-report",
                Box::new(move |shutdown| {
                    async move {
                        relay_status::report::run(broker, accounts, interval, shutdown).await;
                        Ok(())
                    }
                    .boxed()
                }),
            ));
        }
        let admin =
            admin::Admin::build(settings.admin.listen, broker, registry).map_err(|source| {
                StartError::Bind {
                    what: "the admin listener",
                    address: settings.admin.listen,
                    source,
                }
            })?;
        app.admin_port = admin.port();
        // Under systemd (`Type=notify`): readiness, the watchdog and stopping, told as they happen.
        if let Some(notifier) = notify::Notifier::from_env() {
            let broker = app.broker.clone();
            app.runners.push((
                "systemd-notify",
                Box::new(move |shutdown| {
                    async move {
                        notifier.run(broker, shutdown).await;
                        Ok(())
                    }
                    .boxed()
                }),
            ));
        }
        app.runners.push((
            "admin",
            Box::new(move |shutdown| {
                async move {
                    admin.run(shutdown).await.map_err(|error| RunError {
                        component: "admin",
                        reason: error.to_string(),
                    })
                }
                .boxed()
            }),
        ));
        Ok(app)
    }

    /// The registration list: every component, built from the shared parts.
    fn register(
        &mut self,
        component: Component,
        settings: &Settings,
        shared: Option<&Shared>,
        metrics: &Metrics,
        registry: &Arc<Registry>,
    ) -> Result<(), StartError> {
        let name = component.as_str();
        let pipeline = |error: PipelineStartError| StartError::Pipeline {
            component: name,
            source: error,
        };
        let runner: Runner = match (component, shared) {
            (Component::Ingress, _) => {
                let accounts: Vec<WebhookAccount> = settings
                    .accounts
                    .iter()
                    .map(|account| WebhookAccount {
                        name: account.name.clone(),
                        account_id: account.account_id.clone(),
                        secret_tokens: account.secret_tokens.clone(),
                    })
                    .collect();
                let ingress = Ingress::build(
                    &settings.ingress,
                    &accounts,
                    self.broker.clone(),
                    metrics.ingress.clone(),
                    registry.clone(),
                )
                .map_err(|source| StartError::Bind {
                    what: "the ingress",
                    address: settings.ingress.listen,
                    source,
                })?;
                self.ingress_port = Some(ingress.port());
                Box::new(move |shutdown| {
                    async move {
                        ingress.run(shutdown).await.map_err(|error| RunError {
                            component: "ingress",
                            reason: error.to_string(),
                        })
                    }
                    .boxed()
                })
            }
            (Component::Plan, Some(shared)) => {
                self.stage(relay_plan::Plan::new(shared), shared, shared.settings.plan)
            }
            (Component::Download, Some(shared)) => self.stage(
                relay_download::Download::new(shared),
                shared,
                shared.settings.download,
            ),
            (Component::Assemble, Some(shared)) => self.stage(
                relay_assemble::Assemble::new(shared).map_err(pipeline)?,
                shared,
                shared.settings.assemble,
            ),
            (Component::Upload, Some(shared)) => self.stage(
                relay_upload::Upload::new(shared),
                shared,
                shared.settings.upload,
            ),
            (Component::Cleanup, Some(shared)) => self.stage(
                relay_cleanup::Cleanup::new(shared),
                shared,
                shared.settings.cleanup,
            ),
            (Component::Reconcile, Some(shared)) => {
                let reconciler = relay_reconcile::Reconciler::new(
                    shared,
                    Arc::new(BrokerOutbox::new(self.broker.clone())),
                    settings.reconcile.clone(),
                    metrics.reconcile.clone(),
                );
                let broker = self.broker.clone();
                Box::new(move |shutdown| {
                    async move {
                        // A pass hands over and reports through the broker: the first one
                        // waits for it rather than failing at start.
                        tokio::select! {
                            () = shutdown.cancelled() => return Ok(()),
                            () = async {
                                while !broker.wait_ready(std::time::Duration::from_secs(10)).await {}
                            } => {}
                        }
                        reconciler.run(shutdown).await;
                        Ok(())
                    }
                    .boxed()
                })
            }
            (Component::Websocket, Some(shared)) => {
                // Its own reconciler: passes over a socket's gaps, not on reconcile's schedule.
                let reconciler = relay_reconcile::Reconciler::new(
                    shared,
                    Arc::new(BrokerOutbox::new(self.broker.clone())),
                    settings.reconcile.clone(),
                    metrics.reconcile.clone(),
                );
                let delivery = relay_websocket::WebsocketDelivery::new(
                    &settings.websocket,
                    shared,
                    &self.broker,
                    Arc::new(reconciler),
                    metrics.websocket.clone(),
                )
                .map_err(|error| pipeline(PipelineStartError::Requirement(error.to_string())))?;
                Box::new(move |shutdown| {
                    async move {
                        delivery.run(shutdown).await;
                        Ok(())
                    }
                    .boxed()
                })
            }
            (Component::Notifications, Some(shared)) => {
                let notifier = relay_notifications::Notifier::new(
                    shared,
                    &settings.amqp,
                    self.broker.topology(),
                    settings.notifications.clone(),
                    metrics.notifications.clone(),
                )
                .map_err(|error| pipeline(PipelineStartError::Requirement(error.to_string())))?;
                Box::new(move |shutdown| {
                    async move {
                        notifier.run(shutdown).await;
                        Ok(())
                    }
                    .boxed()
                })
            }
            (Component::Status, _) => {
                let state = metrics.status.clone().ok_or_else(|| {
                    pipeline(PipelineStartError::Requirement(
                        "the status view was not built".into(),
                    ))
                })?;
                let server = relay_status::server::StatusServer::build(
                    &settings.status,
                    state,
                    self.broker.settings(),
                    self.broker.management().cloned(),
                )
                .map_err(|error| match error {
                    relay_status::server::StartError::Bind { address, source } => {
                        StartError::Bind {
                            what: "the status listener",
                            address,
                            source,
                        }
                    }
                    refused => pipeline(PipelineStartError::Requirement(refused.to_string())),
                })?;
                self.status_port = Some(server.port());
                Box::new(move |shutdown| {
                    async move {
                        server.run(shutdown).await.map_err(|error| RunError {
                            component: "status",
                            reason: error.to_string(),
                        })
                    }
                    .boxed()
                })
            }
            (_, None) => {
                return Err(pipeline(PipelineStartError::Requirement(
                    "the pipeline's shared parts were not built".into(),
                )));
            }
        };
        self.runners.push((name, runner));
        Ok(())
    }

    fn stage<S: Stage>(
        &self,
        stage: S,
        shared: &Shared,
        capacity: relay_pipeline::settings::StageSettings,
    ) -> Runner {
        let broker = self.broker.clone();
        let settings = shared.settings.loop_settings(capacity);
        let metrics = shared.metrics.clone();
        let stage = Arc::new(stage);
        Box::new(move |shutdown| {
            async move {
                consumer::run(broker, stage, settings, metrics, shutdown).await;
                Ok(())
            }
            .boxed()
        })
    }

    /// The webhook listener's port, when the ingress runs here.
    pub fn ingress_port(&self) -> Option<u16> {
        self.ingress_port
    }

    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    /// The status page's port, when the status component runs here.
    pub fn status_port(&self) -> Option<u16> {
        self.status_port
    }

    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// Runs every component until `shutdown`; one failing stops the process (ops restart it
    /// whole). The broker connection closes only after every component drained, so in-flight
    /// work can still ack.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), RunError> {
        let mut running = JoinSet::new();
        for (name, runner) in self.runners {
            let future = runner(shutdown.clone());
            running.spawn(async move {
                let result = future.await;
                (name, result)
            });
        }
        let mut outcome = Ok(());
        while let Some(finished) = running.join_next().await {
            let result = match finished {
                Ok((_, result)) => result,
                Err(panicked) => Err(RunError {
                    component: "a component",
                    reason: panicked.to_string(),
                }),
            };
            if let Err(error) = result {
                shutdown.cancel();
                if outcome.is_ok() {
                    outcome = Err(error);
                }
            }
        }
        self.broker_shutdown.cancel();
        outcome
    }
}

/// The parts a one-shot command needs (`reconcile --once`, `backfill`, `import`): a broker
/// connection, ready, and a reconciler over it.
pub struct Oneshot {
    pub reconciler: relay_reconcile::Reconciler,
    broker_shutdown: CancellationToken,
}

impl Oneshot {
    pub async fn connect(settings: &Settings) -> Result<Self, StartError> {
        let broker_shutdown = CancellationToken::new();
        let topology = Topology::new(&settings.amqp, &settings.pipeline.retry_delays());
        let broker = Broker::start(&settings.amqp, topology, broker_shutdown.clone());
        if !broker.wait_ready(settings.amqp.connect_timeout).await {
            broker_shutdown.cancel();
            return Err(StartError::Broker);
        }
        let pipeline_error = |source| StartError::Pipeline {
            component: "pipeline",
            source,
        };
        let mut registry = Registry::default();
        let staging = Staging::new(
            &settings.pipeline.staging,
            &settings.pipeline.staging_options,
        )
        .map_err(|error| pipeline_error(error.into()))?;
        let shared = Shared {
            accounts: Accounts::build(&settings.accounts, &settings.zoom, Some(&staging))
                .map_err(|error| pipeline_error(error.into()))?,
            staging,
            settings: Arc::new(settings.pipeline.clone()),
            metrics: StageMetrics::register(&mut registry),
        };
        let reconciler = relay_reconcile::Reconciler::new(
            &shared,
            Arc::new(BrokerOutbox::new(broker)),
            settings.reconcile.clone(),
            relay_reconcile::Metrics::register(&mut registry),
        );
        Ok(Self {
            reconciler,
            broker_shutdown,
        })
    }
}

impl Drop for Oneshot {
    fn drop(&mut self) {
        self.broker_shutdown.cancel();
    }
}
