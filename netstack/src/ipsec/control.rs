//! A tunnel's IKE task: it owns the tunnel's IKE SAs (state machines from
//! `siteward-ike`), feeds them what the host receives for them and the passing of time,
//! and carries out what they ask: send IKE messages, install and remove CHILD_SAs in the
//! data plane, follow NAT-T, and bring the tunnel back after a failure.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use siteward_config::{DpdAction, Host as ConfigHost, StartAction};
use siteward_ike::cookie::{CookieCheck, Cookies};
use siteward_ike::message::{decode, decode_header, ExchangeType};
use siteward_ike::sa::{Failure, IkeSa, NewChild, Output, Path, Refusal, SaConfig, State};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::dataplane::{ChildPolicy, OutboundChild, TunnelData};
use super::esp::{InboundSa, OutboundSa};
use super::host::{ControlEvent, EspRoute, HostInner};
use super::status::{ChildSaView, IkeSaView, IpsecView};
use crate::tunnel::RekeyTarget;

/// Replay window of inbound CHILD_SAs, in packets (strongSwan's default is 32; a larger
/// one tolerates the reordering of multi-queue paths).
const REPLAY_WINDOW: u32 = 1024;
/// Half-open SAs of one tunnel before IKE_SA_INIT must carry a cookie (RFC 7296 §2.6).
const COOKIE_THRESHOLD: usize = 16;
/// First wait before a failed initiator tries again; doubles up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How often the IKE task reads the data plane's activity and byte counts.
const DATA_POLL: Duration = Duration::from_secs(1);
/// How long a UDP-encapsulated path may be idle from our side before a NAT keepalive
/// (strongSwan's default; NAT mappings for UDP commonly live 30 s or more).
const NAT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);

/// What the tunnel's configuration says beyond the SA parameters.
pub(crate) struct Settings {
    pub sa: Arc<SaConfig>,
    pub start: StartAction,
    pub dpd_action: DpdAction,
    pub remote_addrs: Vec<ConfigHost>,
    pub local_addrs: Vec<IpAddr>,
    pub remote_port: u16,
}

/// A CHILD_SA installed in the data plane, and the IKE SA it belongs to.
struct Installed {
    owner: u64,
    inbound: Arc<InboundSa>,
    outbound: Arc<OutboundChild>,
    established: SystemTime,
}

pub(crate) struct Control {
    name: String,
    settings: Settings,
    data: Arc<TunnelData>,
    host: Arc<HostInner>,
    events: mpsc::Receiver<ControlEvent>,
    /// The IKE SAs, each with a local id.
    sas: Vec<(u64, IkeSa)>,
    next_id: u64,
    children: HashMap<u32, Installed>,
    cookies: Cookies,
    /// When an initiator tries again after a failure, and how long the next wait is.
    retry_at: Option<Instant>,
    backoff: Duration,
    /// Which of `remote_addrs` the next initiation uses.
    next_remote: usize,
    last_failure: Option<String>,
    /// When the timer next reads the data plane (traffic for DPD, bytes for rekeys).
    next_poll: Instant,
    /// When the last NAT keepalive went out.
    last_keepalive: Option<Instant>,
    /// Counts kept across SAs (they come and go with rekeys); only this task writes them.
    totals: Totals,
    view: Arc<RwLock<Published>>,
    epoch: (Instant, SystemTime),
}

impl Control {
    pub fn new(
        name: String,
        settings: Settings,
        data: Arc<TunnelData>,
        host: Arc<HostInner>,
        events: mpsc::Receiver<ControlEvent>,
        view: Arc<RwLock<Published>>,
    ) -> Control {
        let now = Instant::now();
        Control {
            name,
            settings,
            data,
            host,
            events,
            sas: Vec::new(),
            next_id: 1,
            children: HashMap::new(),
            cookies: Cookies::new(now),
            retry_at: None,
            backoff: FIRST_BACKOFF,
            next_remote: 0,
            last_failure: None,
            last_keepalive: None,
            next_poll: now + DATA_POLL,
            totals: Totals::default(),
            view,
            epoch: (now, SystemTime::now()),
        }
    }

    pub async fn run(mut self, cancel: CancellationToken) {
        if self.settings.start == StartAction::Initiate {
            self.initiate(Instant::now()).await;
        }
        self.publish();
        loop {
            let deadline = self.next_deadline();
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => {
                    self.shutdown().await;
                    return;
                }
                event = self.events.recv() => match event {
                    Some(ControlEvent::Ike { path, datagram }) => {
                        self.on_ike(path, &datagram).await
                    }
                    Some(ControlEvent::Trigger) => self.on_trigger().await,
                    Some(ControlEvent::Rekey(target)) => self.on_rekey(target).await,
                    None => return,
                },
                _ = sleep => self.on_timer().await,
            }
            // What closed is gone (its routes were removed when it closed).
            self.sas.retain(|(_, sa)| sa.state() != State::Closed);
            self.publish();
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        // A fixed tick, not pushed back by events: DPD and byte counts are read on it.
        let data_poll = (!self.sas.is_empty()).then_some(self.next_poll);
        self.sas
            .iter()
            .filter_map(|(_, sa)| sa.next_deadline())
            .chain(self.retry_at)
            .chain(data_poll)
            .min()
    }

    async fn on_ike(&mut self, path: Path, datagram: &[u8]) {
        let now = Instant::now();
        let Ok(header) = decode_header(datagram) else {
            return;
        };
        let ours = if header.initiator {
            header.spi_r
        } else {
            header.spi_i
        };
        if header.exchange == ExchangeType::IkeSaInit && !header.response && header.spi_r == 0 {
            // A retransmission for an SA we already answered goes to that SA.
            if let Some(index) = self
                .sas
                .iter()
                .position(|(_, sa)| sa.spis().0 == header.spi_i && sa.state() == State::HalfOpen)
            {
                self.sas[index].1.handle(path, datagram, now);
                self.drain(index).await;
                return;
            }
            self.respond(path, datagram, now).await;
            return;
        }
        let Some(index) = self
            .sas
            .iter()
            .position(|(_, sa)| sa.our_spis().contains(&ours))
        else {
            return;
        };
        self.sas[index].1.handle(path, datagram, now);
        self.drain(index).await;
    }

    async fn respond(&mut self, path: Path, datagram: &[u8], now: Instant) {
        let half_open = self
            .sas
            .iter()
            .filter(|(_, sa)| sa.state() == State::HalfOpen)
            .count();
        if half_open >= COOKIE_THRESHOLD {
            self.cookies.rotate(now);
            let Ok(request) = decode(datagram) else {
                return;
            };
            match self.cookies.check(&request, path.remote.ip()) {
                CookieCheck::Valid => {}
                CookieCheck::Challenge(answer) => {
                    let _ = self.host.send_ike(path, &answer).await;
                    return;
                }
                CookieCheck::Drop => return,
            }
        }
        match IkeSa::respond(self.settings.sa.clone(), path, datagram, now) {
            Ok(sa) => {
                let id = self.add_sa(sa);
                let index = self.index_of(id);
                if let Some(index) = index {
                    self.drain(index).await;
                }
            }
            Err(Refusal::Answer { datagram, failure }) => {
                match failure {
                    Some(failure) => {
                        tracing::warn!(tunnel = %self.name, peer = %path.remote,
                            error = %failure, "refused an IKE_SA_INIT");
                        self.last_failure = Some(format!(
                            "{failure} (refused {}'s IKE_SA_INIT)",
                            path.remote.ip()
                        ));
                    }
                    None => tracing::info!(tunnel = %self.name, peer = %path.remote,
                        "asked the peer to retry IKE_SA_INIT with another key exchange group"),
                }
                let _ = self.host.send_ike(path, &datagram).await;
            }
            Err(Refusal::Drop(why)) => {
                tracing::debug!(tunnel = %self.name, peer = %path.remote, why, "dropped an IKE_SA_INIT");
            }
        }
    }

    fn add_sa(&mut self, sa: IkeSa) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        for spi in sa.our_spis() {
            self.host.route_ike(spi, self.data.events.clone());
        }
        self.sas.push((id, sa));
        id
    }

    fn sa_by_id(&self, id: u64) -> Option<&IkeSa> {
        self.sas.iter().find(|(i, _)| *i == id).map(|(_, sa)| sa)
    }

    fn index_of(&self, id: u64) -> Option<usize> {
        self.sas.iter().position(|(i, _)| *i == id)
    }

    async fn on_trigger(&mut self) {
        self.data.trigger_taken();
        let wants = matches!(
            self.settings.start,
            StartAction::Trap | StartAction::Initiate
        );
        let busy = self.sas.iter().any(|(_, sa)| sa.state() != State::Closed);
        if wants && !busy && self.retry_at.is_none() {
            self.initiate(Instant::now()).await;
        }
    }

    async fn on_rekey(&mut self, target: RekeyTarget) {
        let now = Instant::now();
        for index in 0..self.sas.len() {
            let sa = &mut self.sas[index].1;
            if sa.state() != State::Established {
                continue;
            }
            tracing::info!(tunnel = %self.name, ?target, "rekeying on request");
            match target {
                RekeyTarget::Child => sa.rekey_children(now),
                RekeyTarget::Ike => sa.rekey_ike(now),
            }
            self.drain(index).await;
        }
    }

    async fn on_timer(&mut self) {
        let now = Instant::now();
        let last_inbound = self.data.last_inbound();
        let bytes: Vec<(u32, u64)> = self
            .children
            .iter()
            .map(|(spi, c)| (*spi, c.inbound.bytes() + c.outbound.sa.bytes()))
            .collect();
        let ids: Vec<u64> = self.sas.iter().map(|(id, _)| *id).collect();
        for id in ids {
            // Draining one SA may remove others (INITIAL_CONTACT).
            let Some(index) = self.index_of(id) else {
                continue;
            };
            {
                let sa = &mut self.sas[index].1;
                if let Some(at) = last_inbound {
                    sa.note_inbound_traffic(at);
                }
                for (spi, total) in &bytes {
                    sa.note_child_bytes(*spi, *total);
                }
                sa.poll(now);
            }
            self.drain(index).await;
        }
        if now >= self.next_poll {
            self.next_poll = now + DATA_POLL;
        }
        self.keep_nat_open(now).await;
        if self.retry_at.is_some_and(|at| now >= at) {
            self.retry_at = None;
            if self.sas.is_empty() {
                self.initiate(now).await;
            }
        }
    }

    /// Sends a NAT keepalive on each UDP-encapsulated IKE SA when nothing went to the peer
    /// for [`NAT_KEEPALIVE_INTERVAL`], so a NAT between us keeps its mapping.
    async fn keep_nat_open(&mut self, now: Instant) {
        let last_sent = [self.data.last_outbound(), self.last_keepalive]
            .into_iter()
            .flatten()
            .max();
        if last_sent.is_some_and(|at| now.saturating_duration_since(at) < NAT_KEEPALIVE_INTERVAL) {
            return;
        }
        let paths: Vec<Path> = self
            .sas
            .iter()
            .filter(|(_, sa)| sa.state() == State::Established)
            .map(|(_, sa)| sa.status())
            .filter(|status| {
                status.nat_t
                    && status.established.is_some_and(|at| {
                        now.saturating_duration_since(at) >= NAT_KEEPALIVE_INTERVAL
                    })
            })
            .map(|status| status.path)
            .collect();
        for path in paths {
            if let Err(e) = self.host.send_nat_keepalive(path).await {
                tracing::debug!(tunnel = %self.name, error = %e, "sending a NAT keepalive failed");
            }
            self.last_keepalive = Some(now);
        }
    }

    /// Starts an IKE SA to the next of the configured remote addresses.
    async fn initiate(&mut self, now: Instant) {
        let Some(path) = self.initiator_path().await else {
            self.fail_and_retry(now, "peer unreachable: no remote address resolves".into());
            return;
        };
        match IkeSa::initiate(self.settings.sa.clone(), path, now) {
            Ok(sa) => {
                tracing::info!(tunnel = %self.name, peer = %path.remote, "initiating IKE SA");
                let id = self.add_sa(sa);
                if let Some(index) = self.index_of(id) {
                    self.drain(index).await;
                }
            }
            Err(failure) => self.fail_and_retry(now, failure.to_string()),
        }
    }

    fn fail_and_retry(&mut self, now: Instant, why: String) {
        tracing::warn!(tunnel = %self.name, error = %why, "IKE SA failed");
        self.last_failure = Some(why);
        if self.settings.start == StartAction::Initiate {
            self.retry_at = Some(now + self.backoff);
            self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// The path to the next remote address, with the source address the kernel would use.
    async fn initiator_path(&mut self) -> Option<Path> {
        let count = self.settings.remote_addrs.len();
        for attempt in 0..count {
            let host = &self.settings.remote_addrs[(self.next_remote + attempt) % count];
            let remote_ip = match host {
                ConfigHost::Ip(ip) => Some(*ip),
                ConfigHost::Name(name) => tokio::net::lookup_host((name.as_str(), 0))
                    .await
                    .ok()
                    .and_then(|mut addrs| addrs.next())
                    .map(|a| a.ip()),
            };
            let Some(remote_ip) = remote_ip else {
                continue;
            };
            let remote = SocketAddr::new(remote_ip, self.settings.remote_port);
            let Some(local_ip) = self.source_for(remote) else {
                continue;
            };
            self.next_remote = (self.next_remote + attempt + 1) % count;
            return Some(Path {
                local: SocketAddr::new(local_ip, self.host.ike_port),
                remote,
            });
        }
        None
    }

    /// A configured local address of the right family, or the one the routing table picks.
    fn source_for(&self, remote: SocketAddr) -> Option<IpAddr> {
        if let Some(ip) = self
            .settings
            .local_addrs
            .iter()
            .find(|ip| ip.is_ipv4() == remote.is_ipv4())
        {
            return Some(*ip);
        }
        let any: SocketAddr = if remote.is_ipv4() {
            "0.0.0.0:0".parse().ok()?
        } else {
            "[::]:0".parse().ok()?
        };
        let probe = UdpSocket::bind(any).ok()?;
        probe.connect(remote).ok()?;
        probe.local_addr().ok().map(|a| a.ip())
    }

    /// Carries out what SA `index` asked for.
    async fn drain(&mut self, index: usize) {
        let (id, outputs) = {
            let (id, sa) = &mut self.sas[index];
            (*id, sa.take_outputs())
        };
        for output in outputs {
            match output {
                Output::Send { path, datagram } => {
                    if let Err(e) = self.host.send_ike(path, &datagram).await {
                        tracing::debug!(tunnel = %self.name, error = %e, "sending IKE failed");
                    }
                }
                Output::ChildUp(child) => self.install(id, *child),
                Output::ChildDown { spi_in, .. } => self.uninstall(spi_in),
                Output::Established => {
                    // Earlier outputs (INITIAL_CONTACT) may have removed other SAs: look
                    // this one up again rather than trust `index`.
                    let Some(sa) = self.sa_by_id(id) else {
                        continue;
                    };
                    tracing::info!(tunnel = %self.name, peer = %sa.path().remote,
                        nat_t = sa.status().nat_t, "IKE SA established");
                    self.last_failure = None;
                    self.backoff = FIRST_BACKOFF;
                }
                Output::PathChanged(path) => {
                    for installed in self.children.values().filter(|c| c.owner == id) {
                        *installed
                            .outbound
                            .path
                            .write()
                            .unwrap_or_else(|e| e.into_inner()) = path;
                    }
                }
                Output::InitialContact => self.drop_others(id),
                Output::IkeRekeyed => {
                    self.totals.ike_rekeys += 1;
                    let spis = self.sa_by_id(id).map(IkeSa::our_spis).unwrap_or_default();
                    for spi in spis {
                        self.host.route_ike(spi, self.data.events.clone());
                    }
                }
                Output::SpisRetired { spi_i, spi_r } => {
                    let current = self.sa_by_id(id).map(IkeSa::our_spis).unwrap_or_default();
                    for spi in [spi_i, spi_r] {
                        if !current.contains(&spi) {
                            self.host.unroute_ike(spi);
                        }
                    }
                }
                Output::ChildFailed(failure) => {
                    tracing::warn!(tunnel = %self.name, error = %failure,
                        "CHILD_SA not established");
                    self.last_failure = Some(failure.to_string());
                }
                Output::Closed { failure } => self.closed(id, failure),
            }
        }
    }

    fn install(&mut self, owner: u64, child: NewChild) {
        let policy = Arc::new(ChildPolicy {
            local_ts: child.local_ts.clone(),
            remote_ts: child.remote_ts.clone(),
        });
        let inbound = Arc::new(InboundSa::new(child.spi_in, child.inbound, REPLAY_WINDOW));
        let outbound = Arc::new(OutboundChild {
            sa: OutboundSa::new(child.spi_out, child.outbound),
            policy: policy.clone(),
            path: RwLock::new(child.path),
            encap: child.encap,
        });
        self.host.route_esp(
            child.spi_in,
            EspRoute {
                sa: inbound.clone(),
                data: self.data.clone(),
                child: policy,
            },
        );
        // Make before break: the new SA carries outbound traffic from now on; the old
        // one's inbound half stays until its Delete.
        self.data.set_outbound(Some(outbound.clone()));
        if child.replaces.is_some() {
            self.totals.child_rekeys += 1;
        }
        tracing::info!(tunnel = %self.name, spi_in = format_args!("{:08x}", child.spi_in),
            spi_out = format_args!("{:08x}", child.spi_out), suite = %child.suite,
            encap = child.encap, rekey = child.replaces.is_some(), "CHILD_SA installed");
        self.children.insert(
            child.spi_in,
            Installed {
                owner,
                inbound,
                outbound,
                established: SystemTime::now(),
            },
        );
    }

    fn uninstall(&mut self, spi_in: u32) {
        self.host.unroute_esp(spi_in);
        let Some(removed) = self.children.remove(&spi_in) else {
            return;
        };
        self.totals.retired_replay_drops += removed.inbound.replay_drops();
        self.totals.retired_bytes_in += removed.inbound.bytes();
        self.totals.retired_bytes_out += removed.outbound.sa.bytes();
        let current = self
            .data
            .outbound
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if current.is_some_and(|c| Arc::ptr_eq(&c, &removed.outbound)) {
            // Fall back to the newest remaining CHILD_SA, if any.
            let next = self
                .children
                .values()
                .max_by_key(|c| c.established)
                .map(|c| c.outbound.clone());
            self.data.set_outbound(next);
        }
    }

    /// INITIAL_CONTACT: the peer restarted, so our other SAs with it are stale.
    fn drop_others(&mut self, keep: u64) {
        let stale: Vec<u64> = self
            .sas
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| *id != keep)
            .collect();
        for id in stale {
            self.forget(id);
        }
    }

    /// Removes an SA and everything it installed, without telling the peer.
    fn forget(&mut self, id: u64) {
        self.release(id);
        if let Some(index) = self.index_of(id) {
            self.sas.remove(index);
        }
    }

    /// Removes what SA `id` installed: its CHILD_SAs from the data plane, its SPIs from the
    /// host's IKE routes. The SA itself stays in `sas` (a closed one goes at the end of
    /// the event).
    fn release(&mut self, id: u64) {
        let spis: Vec<u32> = self
            .children
            .iter()
            .filter(|(_, c)| c.owner == id)
            .map(|(spi, _)| *spi)
            .collect();
        for spi in spis {
            self.uninstall(spi);
        }
        for spi in self.sa_by_id(id).map(IkeSa::our_spis).unwrap_or_default() {
            self.host.unroute_ike(spi);
        }
    }

    fn closed(&mut self, id: u64, failure: Option<Failure>) {
        let Some(peer) = self.sa_by_id(id).map(|sa| sa.path().remote) else {
            return;
        };
        self.release(id);
        let now = Instant::now();
        match &failure {
            Some(failure) => {
                if matches!(
                    failure,
                    Failure::AuthenticationFailed(_) | Failure::AuthenticationRejected
                ) {
                    self.totals.auth_failures += 1;
                }
                let restart = match failure {
                    Failure::DeadPeer => self.settings.dpd_action == DpdAction::Restart,
                    Failure::HalfOpenTimeout => false,
                    _ => true,
                };
                tracing::warn!(tunnel = %self.name, %peer, error = %failure, "IKE SA closed");
                self.last_failure = Some(failure.to_string());
                let others_up = self
                    .sas
                    .iter()
                    .any(|(other, sa)| *other != id && sa.state() == State::Established);
                if restart && !others_up && self.settings.start != StartAction::Respond {
                    self.retry_at = Some(now + self.backoff);
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                }
            }
            None => tracing::info!(tunnel = %self.name, %peer, "IKE SA closed"),
        }
    }

    async fn shutdown(&mut self) {
        let now = Instant::now();
        for index in 0..self.sas.len() {
            self.sas[index].1.close(now);
            let outputs = self.sas[index].1.take_outputs();
            for output in outputs {
                if let Output::Send { path, datagram } = output {
                    let _ = self.host.send_ike(path, &datagram).await;
                }
            }
        }
        let ids: Vec<u64> = self.sas.iter().map(|(id, _)| *id).collect();
        for id in ids {
            self.forget(id);
        }
        self.data.set_outbound(None);
        self.publish();
    }

    /// Publishes the SAs for the API and metrics.
    fn publish(&self) {
        let (epoch, wall) = self.epoch;
        let wall_of = |at: Instant| wall + at.saturating_duration_since(epoch);
        let ike_sas = self
            .sas
            .iter()
            .map(|(id, sa)| {
                let status = sa.status();
                IkeSaView {
                    state: status.state.as_str(),
                    initiator: status.initiator,
                    spi_i: status.spi_i,
                    spi_r: status.spi_r,
                    algorithms: status.suite.map(|s| s.to_string()),
                    local: status.path.local,
                    remote: status.path.remote,
                    nat_t: status.nat_t,
                    established: status.established.map(wall_of),
                    rekey_due: status.rekey_at.map(wall_of),
                    children: status
                        .children
                        .iter()
                        .filter_map(|c| {
                            let installed = self.children.get(&c.spi_in)?;
                            (installed.owner == *id).then(|| ChildSaView {
                                spi_in: c.spi_in,
                                spi_out: c.spi_out,
                                algorithms: c.suite.to_string(),
                                local_ts: c.local_ts.iter().map(ts_string).collect(),
                                remote_ts: c.remote_ts.iter().map(ts_string).collect(),
                                established: wall_of(c.established),
                                rekey_due: wall_of(c.rekey_at),
                                bytes_in: installed.inbound.bytes(),
                                bytes_out: installed.outbound.sa.bytes(),
                                packets_in: installed.inbound.packets(),
                                packets_out: installed.outbound.sa.packets(),
                                replay_drops: installed.inbound.replay_drops(),
                                encap: installed.outbound.encap,
                                rekeyed: c.rekeyed,
                            })
                        })
                        .collect(),
                }
            })
            .collect();
        let live = self
            .children
            .iter()
            .map(|(spi, c)| (*spi, (c.inbound.clone(), c.outbound.clone())))
            .collect();
        let mut published = self.view.write().unwrap_or_else(|e| e.into_inner());
        published.view.ike_sas = ike_sas;
        published.view.last_failure = self.last_failure.clone();
        // Published together: a CHILD_SA's counters are either live or retired, never both.
        published.live = live;
        published.totals = self.totals;
    }
}

/// What the tunnel's totals hold beyond its live CHILD_SAs.
#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    ike_rekeys: u64,
    child_rekeys: u64,
    auth_failures: u64,
    /// Of CHILD_SAs already removed.
    retired_replay_drops: u64,
    retired_bytes_in: u64,
    retired_bytes_out: u64,
}

/// What a tunnel's IKE task publishes for the API and metrics: the SAs as of its last
/// event (at least once a second while it has SAs), and the installed CHILD_SAs, whose
/// counters a status read takes fresh.
#[derive(Default)]
pub(crate) struct Published {
    view: IpsecView,
    live: HashMap<u32, (Arc<InboundSa>, Arc<OutboundChild>)>,
    totals: Totals,
}

/// A selector as an operator writes it: a CIDR where the range is one, else a range.
fn ts_string(ts: &siteward_ike::message::TrafficSelector) -> String {
    let range = match ipnet::IpNet::new(ts.start, 0)
        .ok()
        .and_then(|_| cidr_of(ts.start, ts.end))
    {
        Some(net) => net.to_string(),
        None => format!("{}-{}", ts.start, ts.end),
    };
    match (ts.protocol, ts.start_port, ts.end_port) {
        (0, 0, 65535) => range,
        (protocol, start, end) if start == end => format!("{range}[{protocol}/{start}]"),
        (protocol, start, end) => format!("{range}[{protocol}/{start}-{end}]"),
    }
}

/// The network exactly spanning `start`..=`end`, if there is one.
fn cidr_of(start: IpAddr, end: IpAddr) -> Option<ipnet::IpNet> {
    let max = if start.is_ipv4() { 32 } else { 128 };
    (0..=max).find_map(|prefix| {
        let net = ipnet::IpNet::new(start, prefix).ok()?;
        (net.network() == start && net.broadcast() == end).then_some(net)
    })
}

/// The published view with fresh CHILD_SA counters and the tunnel's totals.
pub(crate) fn read_view(published: &RwLock<Published>) -> IpsecView {
    let published = published.read().unwrap_or_else(|e| e.into_inner());
    let mut view = published.view.clone();
    let children = view
        .ike_sas
        .iter_mut()
        .flat_map(|sa| sa.children.iter_mut());
    for child in children {
        if let Some((inbound, outbound)) = published.live.get(&child.spi_in) {
            child.bytes_in = inbound.bytes();
            child.packets_in = inbound.packets();
            child.replay_drops = inbound.replay_drops();
            child.bytes_out = outbound.sa.bytes();
            child.packets_out = outbound.sa.packets();
        }
    }
    let totals = published.totals;
    let children = view.ike_sas.iter().flat_map(|sa| &sa.children);
    let (live_in, live_out, live_replays) = children.fold((0, 0, 0), |(i, o, r), c| {
        (i + c.bytes_in, o + c.bytes_out, r + c.replay_drops)
    });
    view.ike_rekeys = totals.ike_rekeys;
    view.child_rekeys = totals.child_rekeys;
    view.auth_failures = totals.auth_failures;
    view.replay_drops = totals.retired_replay_drops + live_replays;
    view.bytes_in = totals.retired_bytes_in + live_in;
    view.bytes_out = totals.retired_bytes_out + live_out;
    view
}
