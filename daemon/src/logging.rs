//! Log output: human-readable or JSON lines, filtered by level.

use std::sync::OnceLock;

use anyhow::Context;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::cli::{LogArgs, LogFormat};
use crate::log_view::LogView;

/// The live log view fed by the installed logger (one per process, like the logger).
static LOG_VIEW: OnceLock<LogView> = OnceLock::new();

/// The log view of the installed logger; an empty one that stays empty if [`init`] did not
/// run (the API then shows no lines rather than failing).
pub fn log_view() -> LogView {
    LOG_VIEW.get_or_init(LogView::default).clone()
}

pub fn init(args: &LogArgs) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&args.log_level)
        .with_context(|| format!("parsing the log filter \"{}\"", args.log_level))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // Beside the stderr output and under the same filter: the view holds what stderr gets.
    let view_layer = log_view().layer();
    let result = match args.log_format {
        LogFormat::Human => builder.finish().with(view_layer).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .finish()
            .with(view_layer)
            .try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("installing the logger: {e}"))
}
