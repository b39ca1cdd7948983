//! The HTTPS admin listener: REST API now, web UI later.

mod api;
mod config_api;
pub mod openapi;
pub mod tls;
pub mod tools;

pub use api::{local_router, router, spool_view, status_view, AdminState};

use std::sync::Arc;

use axum::Router;
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use siteward_connectors::http_server::{self, ServeOptions};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Connections served at once; more wait in the kernel's accept queue.
const MAX_CONNECTIONS: usize = 256;

/// Serves `app` over TLS on `listener` until `shutdown` is cancelled, then drains.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    app: Router,
    shutdown: CancellationToken,
) {
    let options = ServeOptions {
        name: "admin API".to_string(),
        max_connections: MAX_CONNECTIONS,
        tls: Some(tls),
    };
    http_server::serve(listener, options, TowerToHyperService::new(app), shutdown).await;
}
