//! `siteward spool stats|list|replay|purge`: asks the running daemon over its control
//! socket (the spool file is locked while the daemon runs, so this is the one way in).

use std::process::ExitCode;

use anyhow::{anyhow, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

use crate::cli::{SpoolAction, SpoolArgs};
use crate::control::socket_path;

pub fn run(args: SpoolArgs) -> anyhow::Result<ExitCode> {
    let config = siteward_config::load(&args.config)
        .context("reading the configuration for its state_dir")?;
    let socket = socket_path(&config.appliance.state_dir);
    let (method, path) = match &args.action {
        SpoolAction::Stats => (Method::GET, "/api/v1/spool".to_string()),
        SpoolAction::List {
            dead_letters: false,
            limit,
        } => (Method::GET, format!("/api/v1/spool/events?limit={limit}")),
        SpoolAction::List {
            dead_letters: true,
            limit,
        } => (
            Method::GET,
            format!("/api/v1/spool/dead-letters?limit={limit}"),
        ),
        SpoolAction::Replay => (Method::POST, "/api/v1/spool/replay".to_string()),
        SpoolAction::Purge { dead_letters, yes } => {
            if !yes {
                return Err(anyhow!(
                    "purge deletes events for good; add --yes to confirm"
                ));
            }
            let queue = if *dead_letters {
                "dead-letters"
            } else {
                "events"
            };
            (Method::POST, format!("/api/v1/spool/purge?queue={queue}"))
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (status, body) = runtime.block_on(request(&socket, method, &path))?;
    let pretty = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
    if status.is_success() {
        println!("{pretty}");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("siteward: the daemon answered {status}: {pretty}");
        Ok(ExitCode::FAILURE)
    }
}

async fn request(
    socket: &std::path::Path,
    method: Method,
    path: &str,
) -> anyhow::Result<(hyper::StatusCode, Bytes)> {
    let stream = UnixStream::connect(socket).await.with_context(|| {
        format!(
            "connecting to the daemon's control socket {} (is siteward running, and are you root?)",
            socket.display()
        )
    })?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("talking to the daemon")?;
    tokio::spawn(connection);
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, "localhost")
        .body(Empty::<Bytes>::new())
        .context("building the request")?;
    let response = sender
        .send_request(request)
        .await
        .context("sending the request to the daemon")?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .context("reading the daemon's answer")?
        .to_bytes();
    Ok((status, body))
}
