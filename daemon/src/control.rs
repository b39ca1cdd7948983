//! The control socket: the admin API without bearer tokens on a Unix socket in the state
//! directory (0700, the socket 0600), so root on the box (`siteward spool ...`) can drive
//! the running daemon without creating a token.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use axum::Router;
use tokio::net::UnixListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The socket's name in the state directory.
pub const SOCKET: &str = "control.sock";

pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SOCKET)
}

/// Binds the socket (replacing one left by a daemon that died: the spool's lock already
/// proved no other daemon uses this state directory) and serves `app` until `shutdown`.
pub fn serve(
    state_dir: &Path,
    app: Router,
    shutdown: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    let path = socket_path(state_dir);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing the old {}", path.display())),
    }
    let listener =
        UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("making {} private", path.display()))?;
    Ok(tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "control socket failed");
        }
        let _ = std::fs::remove_file(&path);
    }))
}
