//! `siteward demo`: a self-contained lab in network namespaces, to see the appliance work
//! in a minute on any Linux box (as root): a cloud end (a second `siteward run` holding
//! the far end of a WireGuard tunnel, and a platform receiver), a site LAN with the
//! protocol simulators, and the appliance between them with its checks, a connector whose
//! events flow through the spool and the uplink, and its web UI and `/metrics` reachable
//! from this host. Every process is this binary, so nothing else needs installing.
//!
//! Progress is printed as it comes up; then the URLs and tokens, and the demo waits.
//! SIGINT (Ctrl-C), SIGTERM or SIGHUP stop every process and remove everything the demo
//! made ([`lab`]). After a SIGKILL, the next `siteward demo` or `siteward demo --cleanup`
//! removes the leftovers, found by their `swdemo-` prefix.

mod lab;
mod topology;
mod watch;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;

use lab::Lab;
use topology::{Files, CHECKS, TUNNEL_NAME};
use watch::{Interrupted, Scrape, Signals};

/// How often the demo looks at the appliance while it comes up.
const POLL: Duration = Duration::from_millis(250);
/// How often it looks at its processes once the lab is up.
const WATCH: Duration = Duration::from_secs(1);

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Only remove what an earlier demo left behind (one killed with SIGKILL: processes,
    /// swdemo-* namespaces and links, /run/swdemo-* directories), then exit.
    #[arg(long)]
    pub cleanup: bool,
    /// How long the lab may take to come up (tunnel, every check green, first events at
    /// the platform) before the demo gives up and removes it.
    #[arg(long, default_value = "3m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    lab::require_root()?;
    if args.cleanup {
        let removed = lab::remove_leftovers()?;
        if removed.is_empty() {
            println!("demo: nothing left over by an earlier demo");
        } else {
            println!("demo: removed {}", removed.join(", "));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let signals = Signals::install()?;
    let removed = lab::remove_leftovers().context("removing an earlier demo's leftovers")?;
    if !removed.is_empty() {
        println!(
            "demo: removed what an earlier demo left behind: {}",
            removed.join(", ")
        );
    }
    let mut lab = Lab::create()?;
    let result = bring_up(&mut lab, &signals, args.timeout).and_then(|ready| {
        print_ready(&lab, &ready);
        watch_until_stopped(&mut lab, &signals)
    });
    println!("demo: stopping the lab");
    let removed = lab.teardown();
    println!("demo: removed {}", removed.join(", "));
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => match e.downcast_ref::<Interrupted>() {
            Some(Interrupted(signal)) => {
                println!("demo: stopped by {signal}");
                Ok(ExitCode::SUCCESS)
            }
            None => Err(e),
        },
    }
}

/// What the ready lines print.
struct Ready {
    files: Files,
    setup_token: String,
    platform_events: u64,
}

fn bring_up(lab: &mut Lab, signals: &Signals, timeout: Duration) -> anyhow::Result<Ready> {
    let deadline = Instant::now() + timeout;
    println!("demo: building the lab in {}", lab.dir().display());
    let files = topology::write_files(lab.dir())?;
    topology::build_network(lab)?;
    for spec in topology::processes(&files) {
        lab.spawn(spec)?;
    }
    println!("demo: started {}", topology::describe());
    println!(
        "demo: logs in {} (pids {})",
        lab.log_dir().display(),
        lab.pids()
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    );

    let metrics = topology::metrics_addr();
    let scrape = || watch::scrape(metrics).ok();
    wait_for(
        lab,
        signals,
        deadline,
        "the appliance's /metrics to answer",
        scrape,
    )?;

    wait_for(lab, signals, deadline, "the tunnel to come up", || {
        let up = scrape()?.value("siteward_tunnel_up", "tunnel", TUNNEL_NAME)? == 1.0;
        up.then_some(())
    })?;
    println!("demo: tunnel up ({TUNNEL_NAME}: WireGuard to the cloud end, both ends siteward)");

    let mut shown = None;
    let mut down: Vec<&str> = CHECKS.to_vec();
    let all_up = wait_for(lab, signals, deadline, "every check to go green", || {
        let scrape = scrape()?;
        down = checks_not_up(&scrape);
        let up = CHECKS.len() - down.len();
        if shown != Some(up) {
            shown = Some(up);
            println!("demo: {up}/{} checks up", CHECKS.len());
        }
        down.is_empty().then_some(())
    });
    all_up.with_context(|| format!("not up: {}", down.join(", ")))?;

    let platform_log = lab.log_path(topology::PLATFORM);
    let platform_events = wait_for(
        lab,
        signals,
        deadline,
        "the first events at the platform",
        || {
            let delivered = scrape()?.plain("siteward_uplink_events_delivered_total")?;
            let received = watch::platform_events(&platform_log)?;
            (delivered >= 1.0 && received >= 1).then_some(received)
        },
    )?;
    println!(
        "demo: first events delivered: the platform received {platform_events} (PBX call \
         events from the AMI connector, through the spool and the uplink over the tunnel)"
    );
    let setup_token = topology::setup_token(&files)?;
    Ok(Ready {
        files,
        setup_token,
        platform_events,
    })
}

/// The demo's checks that the scrape does not show up.
fn checks_not_up(scrape: &Scrape) -> Vec<&'static str> {
    CHECKS
        .iter()
        .copied()
        .filter(|check| scrape.value("siteward_check_up", "check", check) != Some(1.0))
        .collect()
}

/// Polls `poll` until it answers, a process of the lab ends, a stop signal comes, or the
/// deadline passes (the error then says what was awaited, with the appliance's last log
/// lines).
fn wait_for<T>(
    lab: &mut Lab,
    signals: &Signals,
    deadline: Instant,
    what: &str,
    mut poll: impl FnMut() -> Option<T>,
) -> anyhow::Result<T> {
    loop {
        if let Some(value) = poll() {
            return Ok(value);
        }
        lab.check_processes()?;
        if Instant::now() >= deadline {
            anyhow::bail!(
                "waited in vain for {what}; the end of the appliance's log:\n{}",
                lab::log_tail(&lab.log_path(topology::APPLIANCE), 15)
            );
        }
        signals.pause(POLL)?;
    }
}

fn print_ready(lab: &Lab, ready: &Ready) {
    let cert = topology::admin_cert(&ready.files);
    let token = &ready.files.api_token;
    let admin = topology::admin_url();
    println!("demo: ready");
    println!("  web UI       {admin}");
    println!(
        "  certificate  {} (self-signed: the browser asks to accept it)",
        cert.display()
    );
    println!(
        "  setup token  {} (the web UI's first page asks for it)",
        ready.setup_token
    );
    println!("  metrics      {}", topology::metrics_url());
    println!("  API token    {token}");
    println!(
        "  API example  curl --cacert {} -H 'Authorization: Bearer {token}' {admin}api/v1/checks",
        cert.display()
    );
    println!(
        "  webhook      curl -H 'Content-Type: application/json' -d '{{\"hello\":\"demo\"}}' {}",
        topology::webhook_url()
    );
    println!(
        "  platform     {} events received so far (log {})",
        ready.platform_events,
        lab.log_path(topology::PLATFORM).display()
    );
    println!("  logs         {}", lab.log_dir().display());
    println!(
        "  shell        ip netns exec {} bash   (the appliance's view; also {} and {})",
        topology::NS_APPLIANCE,
        topology::NS_CLOUD,
        topology::NS_SITE
    );
    println!("demo: running; Ctrl-C stops it and removes the lab");
}

/// Waits for a stop signal; an error if a process of the lab ends meanwhile.
fn watch_until_stopped(lab: &mut Lab, signals: &Signals) -> anyhow::Result<()> {
    loop {
        signals.pause(WATCH)?;
        lab.check_processes()?;
    }
}
