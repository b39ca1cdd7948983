//! An IPsec tunnel: its TUN device, routes and data plane, its IKE task, and its place
//! in the shared [`super::host::Host`].

use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use siteward_config::{Host as ConfigHost, Tunnel as TunnelConfig, TunnelKind};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::control::{read_view, Control, Published};
use super::dataplane::{self, ChildPolicy, TunnelData};
use super::host::{ControlEvent, Host, Responder};
use super::settings::settings_of;
use crate::device::{self, Device};
use crate::tunnel::{
    BoxFuture, PeerStatus, RekeyError, RekeyTarget, Tunnel, TunnelError, TunnelStatus, Update,
};

/// IKE messages queued for a tunnel's IKE task before more are dropped.
const EVENT_QUEUE: usize = 1024;

pub struct IpsecTunnel {
    name: String,
    interface: String,
    remote_id: Option<String>,
    host: Arc<Host>,
    data: Arc<TunnelData>,
    view: Arc<RwLock<Published>>,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl IpsecTunnel {
    /// Creates the TUN device with its addresses and the routes to `remote_ts`, joins the
    /// shared IKE endpoints, and starts the IKE task and the data plane.
    pub async fn start(config: &TunnelConfig) -> Result<Self, TunnelError> {
        let fail = |what: String| TunnelError::new(&config.name, what);
        let TunnelKind::Ipsec(ipsec) = &config.kind else {
            return Err(fail("not an IPsec tunnel".into()));
        };
        let settings = settings_of(ipsec).map_err(fail)?;
        let host = Host::acquire(ipsec.local_port).map_err(fail)?;

        let Device {
            tun,
            netlink,
            index: ifindex,
        } = device::open(&config.name, &config.interface, ipsec.mtu, &ipsec.addresses).await?;
        // The box's addresses are listed only when none of the tunnel's own is a source.
        let mut box_addresses: Option<Vec<IpAddr>> = None;
        for net in &ipsec.remote_ts {
            let ipv4 = net.addr().is_ipv4();
            let own = ipsec.addresses.iter().map(|a| a.addr());
            let mut source = address_in_local_ts(ipsec, own, ipv4);
            if source.is_none() {
                if box_addresses.is_none() {
                    box_addresses =
                        Some(netlink.addresses().await.map_err(|e| fail(e.to_string()))?);
                }
                let others = box_addresses.iter().flatten().copied();
                source = address_in_local_ts(ipsec, others, ipv4);
            }
            netlink
                .add_route_from(ifindex, *net, source)
                .await
                .map_err(|e| fail(format!("on {}: {e}", config.interface)))?;
        }

        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        let configured = ChildPolicy {
            local_ts: settings.sa.local_ts.clone(),
            remote_ts: settings.sa.remote_ts.clone(),
        };
        let data = Arc::new(TunnelData::new(
            config.name.clone(),
            tun,
            ipsec.mtu,
            host.inner.clone(),
            configured,
            events_tx.clone(),
        ));
        let remote: Vec<IpAddr> = ipsec
            .remote_addrs
            .iter()
            .filter_map(|h| match h {
                ConfigHost::Ip(ip) => Some(*ip),
                ConfigHost::Name(_) => None,
            })
            .collect();
        let accepts_any = ipsec.remote_addrs.is_empty()
            || ipsec
                .remote_addrs
                .iter()
                .any(|h| matches!(h, ConfigHost::Name(_)));
        host.inner.add_responder(Responder {
            tunnel: config.name.clone(),
            // A peer known by name may come from any of its addresses.
            remote: if accepts_any { Vec::new() } else { remote },
            local: ipsec.local_addrs.clone(),
            events: events_tx,
        });
        let view = Arc::new(RwLock::new(Published::default()));
        let control = Control::new(
            config.name.clone(),
            settings,
            data.clone(),
            host.inner.clone(),
            events_rx,
            view.clone(),
        );
        let cancel = CancellationToken::new();
        let tasks = vec![
            tokio::spawn(control.run(cancel.clone())),
            tokio::spawn(dataplane::outbound(data.clone(), cancel.clone())),
        ];
        tracing::info!(tunnel = %config.name, interface = %config.interface,
            kind = "ipsec", start = ?ipsec.start, "tunnel started");
        Ok(IpsecTunnel {
            name: config.name.clone(),
            interface: config.interface.clone(),
            remote_id: ipsec.remote_id.as_ref().map(|id| id.to_string()),
            host,
            data,
            view,
            cancel,
            tasks,
        })
    }
}

/// The source address for traffic this box itself sends into the tunnel: one inside
/// `local_ts`, so the far side's selectors accept it and its routes lead back (strongSwan
/// picks one the same way). The tunnel's own `addresses` are tried first, then any address
/// of the box.
fn address_in_local_ts(
    ipsec: &siteward_config::IpsecTunnel,
    mut candidates: impl Iterator<Item = IpAddr>,
    ipv4: bool,
) -> Option<IpAddr> {
    candidates.find(|ip| ip.is_ipv4() == ipv4 && ipsec.local_ts.iter().any(|ts| ts.contains(ip)))
}

impl Tunnel for IpsecTunnel {
    fn status(&self) -> TunnelStatus {
        let view = read_view(&self.view);
        let established = view
            .ike_sas
            .iter()
            .find(|sa| sa.state == "established" && !sa.children.is_empty());
        let fault = self.data.fault.get();
        let up = established.is_some() && fault.is_none();
        let peer = view.ike_sas.first().map(|sa| PeerStatus {
            name: self
                .remote_id
                .clone()
                .unwrap_or_else(|| sa.remote.ip().to_string()),
            public_key: String::new(),
            endpoint: Some(sa.remote),
            last_handshake: sa.established,
            rx_bytes: view.bytes_in,
            tx_bytes: view.bytes_out,
            persistent_keepalive: None,
            allowed_ips: Vec::new(),
        });
        TunnelStatus {
            name: self.name.clone(),
            kind: "ipsec",
            interface: self.interface.clone(),
            running: fault.is_none(),
            up,
            listen_port: Some(self.host.inner.ike_port),
            error: fault,
            peers: peer.into_iter().collect(),
            dropped: self.data.drops.snapshot(),
            ipsec: Some(view),
        }
    }

    fn update<'a>(
        &'a self,
        _config: &'a TunnelConfig,
    ) -> BoxFuture<'a, Result<Update, TunnelError>> {
        // Any change renegotiates: identities, keys, proposals and selectors are all part
        // of the SAs. Other tunnels are untouched.
        Box::pin(async { Ok(Update::NeedsRestart) })
    }

    fn rekey(&self, target: RekeyTarget) -> Result<(), RekeyError> {
        let view = read_view(&self.view);
        if !view.ike_sas.iter().any(|sa| sa.state == "established") {
            return Err(RekeyError::NotEstablished);
        }
        self.data
            .events
            .try_send(ControlEvent::Rekey(target))
            .map_err(|_| RekeyError::Busy)
    }

    fn stop(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let IpsecTunnel {
                name,
                host,
                data,
                cancel,
                tasks,
                ..
            } = *self;
            host.inner.remove_responder(&name);
            cancel.cancel();
            for task in tasks {
                let _ = task.await;
            }
            // Dropping the TUN device (with `data`) removes the interface and its routes;
            // then the shared sockets close if no other IPsec tunnel uses them.
            drop(data);
            host.release().await;
        })
    }
}
