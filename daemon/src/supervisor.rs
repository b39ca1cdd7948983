//! `siteward run`: binds the listeners, starts the tunnels, the check engine and the
//! servers, and turns signals into shutdown (SIGTERM, SIGINT) and reload (SIGHUP).

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use siteward_config::Config;
use siteward_connectors::engine::Engine;
use siteward_connectors::net::Resolver;
use siteward_netstack::Tunnels;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

use crate::accounts::AccountStore;
use crate::admin::{self, AdminState};
use crate::apply::{self, Applier, Parts, StatusFn};
use crate::config_store::{unix_now, Actor, ConfigStore};
use crate::control;
use crate::forwarding::Forwarding;
use crate::metrics::{self, DaemonStats, MetricsState};
use crate::sd_notify::{self, Notifier};
use crate::sessions::{LoginLimiter, Sessions};
use crate::state_files::ensure_private_dir;
use crate::tokens::TokenStore;

/// Failed web UI logins a source may make in a window before it must wait.
const LOGIN_FAILURES: u32 = 5;
const LOGIN_WINDOW: Duration = Duration::from_secs(5 * 60);

/// How long servers get to stop after shutdown is asked for.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the daemon until SIGTERM or SIGINT.
///
/// A commit waiting for confirmation whose window passed while the daemon was down is
/// rolled back first; if the daemon cannot start with a commit still waiting for
/// confirmation, the previous file is restored at once, so the next start (systemd's
/// restart) comes up with the configuration that worked.
pub async fn run(config_path: PathBuf, config: Config) -> anyhow::Result<()> {
    let store = ConfigStore::new(&config_path, &config.appliance.state_dir);
    let config = if apply::restore_if_expired(&store).context("restoring an unconfirmed commit")? {
        siteward_config::load(&config_path).context("loading the restored configuration")?
    } else {
        config
    };
    let result = serve(config_path, config).await;
    if let Err(e) = &result {
        if let Ok(Some(pending)) = store.pending() {
            return match apply::restore_pending(&store, &pending, "did not start") {
                Ok(_) => Err(anyhow::anyhow!(
                    "{e:#}; the configuration before the unconfirmed commit was restored: start again"
                )),
                Err(restore) => Err(anyhow::anyhow!("{e:#}; restoring the previous configuration also failed: {restore:#}")),
            };
        }
    }
    result
}

async fn serve(config_path: PathBuf, config: Config) -> anyhow::Result<()> {
    // First of all: a signal's default action would kill the process, and an operator or
    // systemd may send one as soon as the process exists.
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sighup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let notifier = Arc::new(Notifier::from_env().unwrap_or_else(|e| {
        tracing::warn!(error = %format!("{e:#}"), "not sending systemd notifications");
        Notifier::disabled()
    }));
    tracing::info!(
        uid = nix::unistd::geteuid().as_raw(),
        capabilities = %crate::privileges::describe_effective(),
        "privileges"
    );
    let state_dir = &config.appliance.state_dir;
    ensure_private_dir(state_dir).context("preparing the state directory")?;
    let tls = admin::tls::server_config(&config).context("preparing the admin API certificate")?;
    if let Some(token) = AccountStore::in_state_dir(state_dir)
        .ensure_setup_token()
        .context("preparing the web UI's setup token")?
    {
        tracing::warn!(
            setup_token = %token.display(),
            "no web UI account yet: the setup page asks for the token in this file \
             (or run `siteward passwd USER`)"
        );
    }

    let admin_listener = bind(config.admin.listen, "admin API").await?;
    let metrics_listener = bind(config.metrics.listen, "metrics").await?;

    // Tunnels first: checks may be placed on a tunnel's interface.
    let tunnels = Arc::new(Tunnels::new());
    apply::log_tunnel_changes(&tunnels.apply(&config.tunnels).await);

    let resolver = Resolver::from_system().context("setting up name resolution")?;
    let engine = Arc::new(Engine::new(resolver.clone()));
    engine.apply(&config.checks);
    let stats = Arc::new(DaemonStats::default());
    stats
        .last_reload_success
        .store(unix_now(), Ordering::Relaxed);

    let diagnostics = Arc::new(
        crate::diagnostics::Diagnostics::new(resolver.clone())
            .context("setting up the diagnostics")?,
    );
    let forwarding = Arc::new(Forwarding::open(
        &config.appliance.name,
        state_dir,
        config.spool.max_bytes,
        resolver,
    )?);
    apply::log_start_changes(
        "connectors",
        &forwarding.apply_connectors(&config.connectors).await,
    );
    apply::log_start_changes("relays", &forwarding.apply_relays(&config.relays).await);
    let status = status_report(&engine, &tunnels, &forwarding);
    forwarding
        .apply_uplink(config.uplink.as_ref(), status.clone())
        .await?;

    let store = ConfigStore::new(&config_path, state_dir);
    let running_version = store
        .read_config_file()
        .and_then(|text| store.record_running(&text, &Actor::daemon(), "started"))
        .context("recording the configuration in the history")?;
    let applier = Arc::new(Applier::new(
        Parts {
            engine: engine.clone(),
            tunnels: tunnels.clone(),
            forwarding: forwarding.clone(),
            status,
            stats: stats.clone(),
            notifier: notifier.clone(),
        },
        store,
        config.clone(),
        running_version,
    ));
    let shutdown = CancellationToken::new();
    let pending_task = tokio::spawn(applier.clone().watch_pending(shutdown.clone()));
    let admin_state = Arc::new(AdminState {
        engine: engine.clone(),
        tunnels: tunnels.clone(),
        forwarding: forwarding.clone(),
        tokens: TokenStore::in_state_dir(state_dir),
        appliance: config.appliance.name.clone(),
        started: Instant::now(),
        applier: applier.clone(),
        accounts: AccountStore::in_state_dir(state_dir),
        sessions: Sessions::new(config.admin.session_idle, config.admin.session_lifetime),
        login_limiter: LoginLimiter::new(LOGIN_FAILURES, LOGIN_WINDOW),
        rates: Default::default(),
        diagnostics,
        log_view: crate::logging::log_view(),
    });
    let control_task = control::serve(
        state_dir,
        admin::local_router(admin_state.clone()),
        shutdown.clone(),
    )
    .context("opening the control socket")?;
    let admin_task = tokio::spawn(admin::serve(
        admin_listener,
        tls,
        admin::router(admin_state),
        shutdown.clone(),
    ));
    let metrics_state = Arc::new(MetricsState {
        engine: engine.clone(),
        tunnels: tunnels.clone(),
        forwarding: forwarding.clone(),
        stats: stats.clone(),
    });
    let metrics_task = tokio::spawn(metrics::serve(
        metrics_listener,
        metrics_state,
        shutdown.clone(),
    ));
    tracing::info!(
        appliance = %config.appliance.name,
        checks = config.checks.len(),
        tunnels = config.tunnels.len(),
        connectors = config.connectors.len(),
        relays = config.relays.len(),
        config = %config_path.display(),
        "siteward running"
    );
    notifier.ready(&apply::status_line(&config));
    let (liveness, mut liveness_requests) = sd_notify::liveness_channel();
    match sd_notify::watchdog_interval_from_env() {
        Ok(Some(interval)) => {
            tracing::info!("feeding systemd's watchdog every {interval:?}");
            tokio::spawn(sd_notify::feed_watchdog(
                notifier.clone(),
                liveness,
                interval,
                shutdown.clone(),
            ));
        }
        Ok(None) => drop(liveness),
        Err(e) => tracing::warn!(error = %format!("{e:#}"), "not feeding systemd's watchdog"),
    }

    loop {
        tokio::select! {
            _ = sigterm.recv() => { tracing::info!("SIGTERM: stopping"); break; }
            _ = sigint.recv() => { tracing::info!("SIGINT: stopping"); break; }
            _ = sighup.recv() => {
                notifier.reloading();
                applier.reload_from_disk().await;
                notifier.ready(&apply::status_line(&applier.running()));
            }
            Some(reply) = liveness_requests.recv() => { let _ = reply.send(()); }
        }
    }

    notifier.stopping();
    shutdown.cancel();
    forwarding.shutdown().await;
    engine.shutdown().await;
    tunnels.shutdown().await;
    let stopped = tokio::time::timeout(STOP_TIMEOUT, async {
        let _ = pending_task.await;
        let _ = control_task.await;
        let _ = admin_task.await;
        let _ = metrics_task.await;
    })
    .await;
    if stopped.is_err() {
        tracing::warn!("listeners did not stop within {STOP_TIMEOUT:?}");
    }
    tracing::info!("stopped");
    Ok(())
}

async fn bind(addr: std::net::SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the {what} listener to {addr}"))?;
    let bound = listener
        .local_addr()
        .with_context(|| format!("reading the {what} listener's address"))?;
    // Tests and scripts wait for this line (with port 0 it is the only way to learn the port).
    tracing::info!(listener = what, addr = %bound, "listening");
    Ok(listener)
}

/// Builds the payload of a status report: what the API shows of checks, tunnels, the spool.
fn status_report(
    engine: &Arc<Engine>,
    tunnels: &Arc<Tunnels>,
    forwarding: &Arc<Forwarding>,
) -> StatusFn {
    let (engine, tunnels) = (engine.clone(), tunnels.clone());
    // Weak: the uplink holding this closure must not keep the spool alive.
    let forwarding = Arc::downgrade(forwarding);
    Arc::new(move || {
        let spool = forwarding.upgrade().map(|f| admin::spool_view(&f));
        admin::status_view(&engine, &tunnels, spool)
    })
}
