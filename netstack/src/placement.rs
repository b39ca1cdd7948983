//! Binding sockets to a source address and/or an interface.

use std::io;
use std::net::{IpAddr, SocketAddr};

use siteward_config::Placement;
use socket2::Socket;
use tokio::net::{TcpSocket, UdpSocket};

/// Why a socket could not be placed where the configuration asked.
#[derive(Debug, thiserror::Error)]
pub enum PlacementError {
    #[error("cannot bind to interface {interface}: {source}")]
    Interface {
        interface: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot bind to source address {address}: {source}")]
    Source {
        address: IpAddr,
        #[source]
        source: io::Error,
    },
    #[error("source address {source_addr} cannot reach {remote} (address families differ)")]
    Family {
        source_addr: IpAddr,
        remote: SocketAddr,
    },
    #[error("cannot open socket: {0}")]
    Open(#[source] io::Error),
}

/// Applies a [`Placement`] to new sockets.
pub trait SocketPlacement {
    /// A TCP socket toward `remote`, bound as the placement says, not yet connected.
    fn tcp_socket(&self, remote: SocketAddr) -> Result<TcpSocket, PlacementError>;
    /// A UDP socket toward `remote`, bound as the placement says (ephemeral port), not connected.
    fn udp_socket(&self, remote: SocketAddr) -> Result<UdpSocket, PlacementError>;
    /// Binds a raw socket2 socket (e.g. ICMP) as the placement says.
    fn place_socket(&self, socket: &Socket, remote: IpAddr) -> Result<(), PlacementError>;
}

impl SocketPlacement for Placement {
    fn tcp_socket(&self, remote: SocketAddr) -> Result<TcpSocket, PlacementError> {
        let socket = if remote.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(PlacementError::Open)?;
        if let Some(interface) = &self.interface {
            socket
                .bind_device(Some(interface.as_bytes()))
                .map_err(|source| PlacementError::Interface {
                    interface: interface.clone(),
                    source,
                })?;
        }
        if let Some(address) = bind_address(self, remote)? {
            socket
                .bind(address)
                .map_err(|source| PlacementError::Source {
                    address: address.ip(),
                    source,
                })?;
        }
        Ok(socket)
    }

    fn udp_socket(&self, remote: SocketAddr) -> Result<UdpSocket, PlacementError> {
        let domain = socket2::Domain::for_address(remote);
        let socket = Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))
            .map_err(PlacementError::Open)?;
        socket.set_nonblocking(true).map_err(PlacementError::Open)?;
        self.place_socket(&socket, remote.ip())?;
        let unspecified: SocketAddr = if remote.is_ipv4() {
            (IpAddr::from([0u8; 4]), 0).into()
        } else {
            (IpAddr::from([0u16; 8]), 0).into()
        };
        if self.source.is_none() {
            socket
                .bind(&unspecified.into())
                .map_err(PlacementError::Open)?;
        }
        UdpSocket::from_std(socket.into()).map_err(PlacementError::Open)
    }

    fn place_socket(&self, socket: &Socket, remote: IpAddr) -> Result<(), PlacementError> {
        if let Some(interface) = &self.interface {
            socket
                .bind_device(Some(interface.as_bytes()))
                .map_err(|source| PlacementError::Interface {
                    interface: interface.clone(),
                    source,
                })?;
        }
        if let Some(address) = bind_address(self, SocketAddr::new(remote, 0))? {
            socket
                .bind(&address.into())
                .map_err(|source| PlacementError::Source {
                    address: address.ip(),
                    source,
                })?;
        }
        Ok(())
    }
}

/// The local address to bind before connecting, if a source is configured.
fn bind_address(
    placement: &Placement,
    remote: SocketAddr,
) -> Result<Option<SocketAddr>, PlacementError> {
    match placement.source {
        None => Ok(None),
        Some(source) if source.is_ipv4() != remote.is_ipv4() => Err(PlacementError::Family {
            source_addr: source,
            remote,
        }),
        Some(source) => Ok(Some(SocketAddr::new(source, 0))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn source_address_is_bound() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let remote = listener.local_addr().unwrap();
        let placement = Placement {
            source: Some("127.0.0.2".parse().unwrap()),
            interface: None,
        };
        let stream = placement
            .tcp_socket(remote)
            .unwrap()
            .connect(remote)
            .await
            .unwrap();
        assert_eq!(stream.local_addr().unwrap().ip(), placement.source.unwrap());
    }

    #[tokio::test]
    async fn family_mismatch_is_an_error() {
        let placement = Placement {
            source: Some("::1".parse().unwrap()),
            interface: None,
        };
        let err = placement
            .tcp_socket("127.0.0.1:9".parse().unwrap())
            .unwrap_err();
        assert!(matches!(err, PlacementError::Family { .. }), "{err}");
    }

    #[tokio::test]
    async fn unknown_interface_is_an_error() {
        let placement = Placement {
            source: None,
            interface: Some("nosuchif0".into()),
        };
        let err = placement
            .udp_socket("127.0.0.1:9".parse().unwrap())
            .unwrap_err();
        assert!(matches!(err, PlacementError::Interface { .. }), "{err}");
    }
}
