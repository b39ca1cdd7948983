//! The command line: `siteward run | check-config | token | wg | simulate`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use siteward_config::DEFAULT_CONFIG_PATH;

#[derive(Debug, Parser)]
#[command(
    name = "siteward",
    version,
    about = "Siteward edge appliance daemon: tunnels, protocol-aware health checks, relays"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon in the foreground (SIGTERM/SIGINT stop it, SIGHUP reloads the config).
    Run(RunArgs),
    /// Validate a configuration file; prints every error with its field path, exits 1 if any.
    CheckConfig(CheckConfigArgs),
    /// Set a web UI user's password (creating the user if needed); reads it from standard
    /// input (without echo on a terminal).
    Passwd(PasswdArgs),
    /// Manage the bearer tokens of the admin API.
    Token(TokenArgs),
    /// WireGuard keys: `genkey` prints a new private key, `pubkey` reads one on stdin and
    /// prints its public key (both base64, like `wg`).
    Wg {
        #[command(subcommand)]
        action: WgAction,
    },
    /// The running daemon's spool: `stats`, `list` waiting events or dead letters,
    /// `replay` dead letters, `purge` a queue.
    Spool(SpoolArgs),
    /// Serve a protocol simulator (for tests, and for checking a firewall path like `niping -s`).
    Simulate(crate::commands::simulate::SimulateArgs),
    /// A live demo (as root): the appliance in a lab of network namespaces, with its tunnel
    /// up, checks green, events flowing to a platform, and its web UI open.
    ///
    /// Builds three network namespaces: swdemo-cloud (the far end of a WireGuard tunnel, a
    /// second `siteward run`, and a receiver of the uplink), swdemo-site (a site LAN with
    /// simulators of an Oracle TNS listener, an SAP gateway, a SAProuter, an Asterisk AMI
    /// and a SIP peer) and swdemo-appliance (`siteward run` between them, with a check of
    /// each kind, the AMI connector and a webhook feeding the spool and the uplink). A veth
    /// link (swdemo-host, 198.51.100.1/30) reaches the appliance from this host, so a
    /// browser here opens its web UI at https://198.51.100.2:8443/. Every process is this
    /// binary; only iproute2's `ip` is needed. Prints progress, then the URLs, the setup
    /// token and an API token, and runs until stopped.
    ///
    /// Ctrl-C (SIGINT), SIGTERM or SIGHUP stop every process and remove the namespaces,
    /// the link and /run/swdemo-<pid> (configurations, state, logs). If the demo is killed
    /// with SIGKILL, the next `siteward demo`, or `siteward demo --cleanup`, finds what it
    /// left by the swdemo- prefix and removes it. One demo runs at a time.
    Demo(crate::commands::demo::DemoArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Configuration file.
    #[arg(long, short, default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// Run even as root (the daemon still drops every capability but CAP_NET_ADMIN,
    /// CAP_NET_BIND_SERVICE and CAP_NET_RAW); without it root is refused, since the
    /// service runs as the `siteward` user with those capabilities.
    #[arg(long)]
    pub allow_root: bool,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// Log format: `human` for a terminal, `json` (one object per line) for log shippers.
    #[arg(long, value_enum, default_value_t = LogFormat::Human, global = true)]
    pub log_format: LogFormat,
    /// Log filter (tracing `EnvFilter` syntax, e.g. `info` or `siteward_connectors=debug`).
    #[arg(long, env = "SITEWARD_LOG", default_value = "info", global = true)]
    pub log_level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// Configuration file to validate.
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Configuration file (its `appliance.state_dir` holds the token store).
    #[arg(long, short, default_value = DEFAULT_CONFIG_PATH, global = true)]
    pub config: PathBuf,
    #[command(subcommand)]
    pub action: TokenAction,
}

#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Create a token and print it once; only its hash is stored.
    Create {
        /// A name for the token (who or what uses it), 1-64 of [A-Za-z0-9._-].
        name: String,
    },
    /// List token names and creation times.
    List,
    /// Revoke a token by name.
    Revoke { name: String },
}

#[derive(Debug, Clone, Copy, Subcommand)]
pub enum WgAction {
    /// Print a new private key (base64).
    Genkey,
    /// Read a private key on standard input, print its public key.
    Pubkey,
}

#[derive(Debug, Args)]
pub struct SpoolArgs {
    /// Configuration file (its `appliance.state_dir` holds the control socket).
    #[arg(long, short, default_value = DEFAULT_CONFIG_PATH, global = true)]
    pub config: PathBuf,
    #[command(subcommand)]
    pub action: SpoolAction,
}

#[derive(Debug, Subcommand)]
pub enum SpoolAction {
    /// Events and bytes waiting, the oldest event's age, dead letters, uplink counters.
    Stats,
    /// The oldest waiting events (or dead letters, with the platform's reason), as JSON.
    List {
        /// List the dead letters instead of the waiting events.
        #[arg(long)]
        dead_letters: bool,
        /// How many to show.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Put every dead letter back into the queue (with new ids).
    Replay,
    /// Delete every waiting event (or, with --dead-letters, every dead letter).
    Purge {
        #[arg(long)]
        dead_letters: bool,
        /// Confirm: purged events are gone for good.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Args)]
pub struct PasswdArgs {
    /// Configuration file (its `appliance.state_dir` holds the accounts).
    #[arg(long, short, default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// The user, 1-64 of [A-Za-z0-9._@-].
    pub user: String,
}
