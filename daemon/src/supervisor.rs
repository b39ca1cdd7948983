//! `siteward run`: binds the listeners, starts the tunnels, the check engine and the
//! servers, and turns signals into shutdown (SIGTERM, SIGINT) and reload (SIGHUP).

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use siteward_config::Config;
use siteward_connectors::engine::Engine;
use siteward_connectors::net::Resolver;
use siteward_netstack::{TunnelChanges, Tunnels};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

use crate::accounts::AccountStore;
use crate::admin::{self, AdminState};
use crate::control;
use crate::forwarding::Forwarding;
use crate::metrics::{self, DaemonStats, MetricsState};
use crate::state_files::ensure_private_dir;
use crate::tokens::TokenStore;
use siteward_connectors::running::SetChanges;

/// How long servers get to stop after shutdown is asked for.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(config_path: PathBuf, config: Config) -> anyhow::Result<()> {
    // First of all: a signal's default action would kill the process, and an operator or
    // systemd may send one as soon as the process exists.
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sighup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
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
    log_tunnel_changes(&tunnels.apply(&config.tunnels).await);

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
    log_set_changes(
        "connectors",
        &forwarding.apply_connectors(&config.connectors).await,
    );
    log_set_changes("relays", &forwarding.apply_relays(&config.relays).await);
    let status = status_report(&engine, &tunnels, &forwarding);
    forwarding
        .apply_uplink(config.uplink.as_ref(), status.clone())
        .await?;

    let shutdown = CancellationToken::new();
    let admin_state = Arc::new(AdminState {
        engine: engine.clone(),
        tunnels: tunnels.clone(),
        forwarding: forwarding.clone(),
        tokens: TokenStore::in_state_dir(state_dir),
        appliance: config.appliance.name.clone(),
        started: Instant::now(),
        diagnostics,
        log_view: crate::logging::log_view(),
        config: Arc::new(config.clone()),
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

    let mut running = config;
    loop {
        tokio::select! {
            _ = sigterm.recv() => { tracing::info!("SIGTERM: stopping"); break; }
            _ = sigint.recv() => { tracing::info!("SIGINT: stopping"); break; }
            _ = sighup.recv() => {
                let parts = Running { engine: &engine, tunnels: &tunnels, forwarding: &forwarding, status: &status };
                reload(&config_path, &mut running, parts, &stats).await
            }
        }
    }

    shutdown.cancel();
    forwarding.shutdown().await;
    engine.shutdown().await;
    tunnels.shutdown().await;
    let stopped = tokio::time::timeout(STOP_TIMEOUT, async {
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

/// What a reload applies a new configuration to.
struct Running<'a> {
    engine: &'a Engine,
    tunnels: &'a Tunnels,
    forwarding: &'a Forwarding,
    status: &'a StatusFn,
}

/// Loads the file again; applies it if valid, else keeps the running configuration.
async fn reload(path: &Path, running: &mut Config, parts: Running<'_>, stats: &DaemonStats) {
    let Running {
        engine,
        tunnels,
        forwarding,
        status,
    } = parts;
    tracing::info!(config = %path.display(), "SIGHUP: reloading the configuration");
    let new = match siteward_config::load(path) {
        Ok(new) => new,
        Err(e) => {
            stats.reloads_failed.fetch_add(1, Ordering::Relaxed);
            for problem in e.field_errors() {
                tracing::error!(path = %problem.path, "{}", problem.message);
            }
            tracing::error!("reload failed; the running configuration stays in force");
            return;
        }
    };
    for (section, changed) in [
        ("appliance", new.appliance != running.appliance),
        ("admin", new.admin != running.admin),
        ("metrics", new.metrics != running.metrics),
        ("spool", new.spool != running.spool),
    ] {
        if changed {
            tracing::warn!(
                section,
                "changes to [{section}] take effect at the next restart"
            );
        }
    }
    log_tunnel_changes(&tunnels.apply(&new.tunnels).await);
    log_set_changes(
        "connectors",
        &forwarding.apply_connectors(&new.connectors).await,
    );
    log_set_changes("relays", &forwarding.apply_relays(&new.relays).await);
    if let Err(e) = forwarding
        .apply_uplink(new.uplink.as_ref(), status.clone())
        .await
    {
        tracing::error!("{e:#}; the uplink stays stopped until the next reload");
    }
    let summary = engine.apply(&new.checks);
    stats.reloads_ok.fetch_add(1, Ordering::Relaxed);
    stats
        .last_reload_success
        .store(unix_now(), Ordering::Relaxed);
    tracing::info!(
        added = ?summary.added,
        removed = ?summary.removed,
        restarted = ?summary.restarted,
        unchanged = summary.unchanged,
        "configuration reloaded"
    );
    // Sections that need a restart keep their running values.
    running.checks = new.checks;
    running.tunnels = new.tunnels;
    running.connectors = new.connectors;
    running.relays = new.relays;
    running.uplink = new.uplink;
}

fn log_set_changes(what: &str, changes: &SetChanges) {
    if changes == &SetChanges::default() {
        return;
    }
    for (name, error) in &changes.failed {
        tracing::error!(name, "{error}");
    }
    tracing::info!(
        added = ?changes.added,
        removed = ?changes.removed,
        restarted = ?changes.restarted,
        failed = changes.failed.len(),
        unchanged = changes.unchanged,
        "{what} applied"
    );
}

/// Builds the payload of a status report: what the API shows of checks, tunnels, the spool.
type StatusFn = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

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

fn log_tunnel_changes(changes: &TunnelChanges) {
    if changes == &TunnelChanges::default() {
        return;
    }
    tracing::info!(
        added = ?changes.added,
        removed = ?changes.removed,
        updated = ?changes.updated,
        restarted = ?changes.restarted,
        failed = ?changes.failed,
        unchanged = changes.unchanged,
        "tunnels applied"
    );
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
