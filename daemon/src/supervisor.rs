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

use crate::admin::{self, AdminState};
use crate::metrics::{self, DaemonStats, MetricsState};
use crate::state_files::ensure_private_dir;
use crate::tokens::TokenStore;

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

    let admin_listener = bind(config.admin.listen, "admin API").await?;
    let metrics_listener = bind(config.metrics.listen, "metrics").await?;

    // Tunnels first: checks may be placed on a tunnel's interface.
    let tunnels = Arc::new(Tunnels::new());
    log_tunnel_changes(&tunnels.apply(&config.tunnels).await);

    let resolver = Resolver::from_system().context("setting up name resolution")?;
    let engine = Arc::new(Engine::new(resolver));
    engine.apply(&config.checks);
    let stats = Arc::new(DaemonStats::default());
    stats
        .last_reload_success
        .store(unix_now(), Ordering::Relaxed);

    let shutdown = CancellationToken::new();
    let admin_state = Arc::new(AdminState {
        engine: engine.clone(),
        tunnels: tunnels.clone(),
        tokens: TokenStore::in_state_dir(state_dir),
        appliance: config.appliance.name.clone(),
        started: Instant::now(),
    });
    let admin_task = tokio::spawn(admin::serve(
        admin_listener,
        tls,
        admin::router(admin_state),
        shutdown.clone(),
    ));
    let metrics_state = Arc::new(MetricsState {
        engine: engine.clone(),
        tunnels: tunnels.clone(),
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
        config = %config_path.display(),
        "siteward running"
    );

    let mut running = config;
    loop {
        tokio::select! {
            _ = sigterm.recv() => { tracing::info!("SIGTERM: stopping"); break; }
            _ = sigint.recv() => { tracing::info!("SIGINT: stopping"); break; }
            _ = sighup.recv() => reload(&config_path, &mut running, &engine, &tunnels, &stats).await,
        }
    }

    shutdown.cancel();
    engine.shutdown().await;
    tunnels.shutdown().await;
    let stopped = tokio::time::timeout(STOP_TIMEOUT, async {
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

/// Loads the file again; applies it if valid, else keeps the running configuration.
async fn reload(
    path: &Path,
    running: &mut Config,
    engine: &Engine,
    tunnels: &Tunnels,
    stats: &DaemonStats,
) {
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
    ] {
        if changed {
            tracing::warn!(
                section,
                "changes to [{section}] take effect at the next restart"
            );
        }
    }
    log_tunnel_changes(&tunnels.apply(&new.tunnels).await);
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
