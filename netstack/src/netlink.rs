//! Interface addresses, link state and routes, through rtnetlink.

use std::net::IpAddr;

use futures_util::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::route::RouteMessage;
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

/// A netlink request failed; says what was being done.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct NetlinkError {
    what: String,
    #[source]
    source: rtnetlink::Error,
}

impl NetlinkError {
    /// The kernel's errno, if it gave one.
    pub fn errno(&self) -> Option<i32> {
        match &self.source {
            rtnetlink::Error::NetlinkError(e) => e.code.map(|c| -c.get()),
            _ => None,
        }
    }
}

fn context(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetlinkError {
    let what = what.into();
    move |source| NetlinkError { what, source }
}

/// A netlink connection, its I/O task running on the current Tokio runtime.
#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    pub fn connect() -> std::io::Result<Self> {
        let (connection, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(connection);
        Ok(Netlink { handle })
    }

    /// The index of interface `name`.
    pub async fn link_index(&self, name: &str) -> Result<u32, NetlinkError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        let link = links
            .try_next()
            .await
            .map_err(context(format!("looking up interface {name}")))?;
        match link {
            Some(link) => Ok(link.header.index),
            None => Err(NetlinkError {
                what: format!("looking up interface {name}"),
                source: rtnetlink::Error::RequestFailed,
            }),
        }
    }

    pub async fn set_up(&self, index: u32, mtu: u32) -> Result<(), NetlinkError> {
        let message = LinkUnspec::new_with_index(index).mtu(mtu).up().build();
        self.handle
            .link()
            .set(message)
            .execute()
            .await
            .map_err(context(format!(
                "bringing interface {index} up with MTU {mtu}"
            )))
    }

    /// Puts `address` (with its prefix length) on the interface.
    pub async fn add_address(&self, index: u32, address: IpNet) -> Result<(), NetlinkError> {
        self.handle
            .address()
            .add(index, address.addr(), address.prefix_len())
            .execute()
            .await
            .map_err(context(format!("adding address {address}")))
    }

    /// Every address on every interface of the namespace.
    pub async fn addresses(&self) -> Result<Vec<IpAddr>, NetlinkError> {
        let mut messages = self.handle.address().get().execute();
        let mut addresses = Vec::new();
        while let Some(message) = messages
            .try_next()
            .await
            .map_err(context("listing interface addresses"))?
        {
            // IFA_LOCAL is the address of a point-to-point link's own end; IFA_ADDRESS
            // is the address otherwise.
            let local = message.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(ip) => Some(*ip),
                _ => None,
            });
            let address = message.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            });
            addresses.extend(local.or(address));
        }
        Ok(addresses)
    }

    /// Routes `network` into the interface. An identical route that already exists (the
    /// kernel's own route for an address's subnet) is not an error.
    pub async fn add_route(&self, index: u32, network: IpNet) -> Result<(), NetlinkError> {
        self.add_route_from(index, network, None).await
    }

    /// Like [`Self::add_route`], with the source address local traffic on the route uses
    /// (`ip route add NET dev IF src ADDR`).
    pub async fn add_route_from(
        &self,
        index: u32,
        network: IpNet,
        source: Option<IpAddr>,
    ) -> Result<(), NetlinkError> {
        let result = self
            .handle
            .route()
            .add(route_message(index, network, source))
            .execute()
            .await
            .map_err(context(format!("adding route {network}")));
        match result {
            Err(e) if e.errno() == Some(libc::EEXIST) => Ok(()),
            other => other,
        }
    }

    /// Removes the route to `network` through the interface; a route already gone is fine.
    pub async fn remove_route(&self, index: u32, network: IpNet) -> Result<(), NetlinkError> {
        let result = self
            .handle
            .route()
            .del(route_message(index, network, None))
            .execute()
            .await
            .map_err(context(format!("removing route {network}")));
        match result {
            Err(e) if e.errno() == Some(libc::ESRCH) => Ok(()),
            other => other,
        }
    }
}

fn route_message(index: u32, network: IpNet, source: Option<IpAddr>) -> RouteMessage {
    let network = network.trunc();
    let mut builder = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(network.addr(), network.prefix_len())
        .expect("the address family matches the prefix length of a valid IpNet");
    if let Some(source) = source.filter(|s| s.is_ipv4() == network.addr().is_ipv4()) {
        builder = builder
            .pref_source(source)
            .expect("the source has the route's address family");
    }
    builder.output_interface(index).build()
}
