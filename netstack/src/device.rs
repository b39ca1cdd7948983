//! The TUN device both tunnel kinds run on: opened with offloads, given its addresses and
//! brought up; and what to do when reading or writing it fails.

use std::sync::Mutex;

use ipnet::IpNet;

use crate::netlink::Netlink;
use crate::tunnel::TunnelError;

/// An open device, up, with its addresses; and the netlink handle that set it up, for the
/// kind to add its routes with.
pub(crate) struct Device {
    pub tun: tun_rs::AsyncDevice,
    pub netlink: Netlink,
    pub index: u32,
}

/// Creates `interface` (TSO/GRO offloads on) with `mtu` and `addresses`, and sets it up.
/// Errors name tunnel `tunnel`.
pub(crate) async fn open(
    tunnel: &str,
    interface: &str,
    mtu: u16,
    addresses: &[IpNet],
) -> Result<Device, TunnelError> {
    let fail = |what: String| TunnelError::new(tunnel, what);
    let tun = tun_rs::DeviceBuilder::new()
        .name(interface)
        .mtu(mtu)
        .offload(true)
        .build_async()
        .map_err(|e| fail(format!("creating TUN device {interface}: {e}")))?;
    let netlink = Netlink::connect().map_err(|e| fail(format!("opening a netlink socket: {e}")))?;
    let index = netlink
        .link_index(interface)
        .await
        .map_err(|e| fail(e.to_string()))?;
    for address in addresses {
        netlink
            .add_address(index, *address)
            .await
            .map_err(|e| fail(format!("on {interface}: {e}")))?;
    }
    netlink
        .set_up(index, u32::from(mtu))
        .await
        .map_err(|e| fail(e.to_string()))?;
    Ok(Device {
        tun,
        netlink,
        index,
    })
}

/// An error after which the device or socket will not work again (as opposed to one
/// packet that could not be handled, or a full buffer).
pub(crate) fn is_fatal(error: &std::io::Error) -> bool {
    match error.raw_os_error() {
        Some(libc::EAGAIN | libc::EINTR | libc::ENOBUFS | libc::ENOMEM | libc::EMSGSIZE) => false,
        // Errors tun-rs makes itself (a malformed offload header) concern one packet.
        None => false,
        Some(_) => true,
    }
}

/// Why a tunnel's data plane stopped; the first reason is kept, and the status shows it.
#[derive(Debug, Default)]
pub(crate) struct Fault(Mutex<Option<String>>);

impl Fault {
    pub fn record(&self, tunnel: &str, why: String) {
        tracing::error!(%tunnel, error = %why, "tunnel data plane stopped");
        let mut fault = self.0.lock().unwrap_or_else(|e| e.into_inner());
        fault.get_or_insert(why);
    }

    pub fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_os_errors_other_than_transient_ones_are_fatal() {
        assert!(!is_fatal(&std::io::Error::from_raw_os_error(libc::EAGAIN)));
        assert!(!is_fatal(&std::io::Error::from_raw_os_error(libc::ENOBUFS)));
        assert!(!is_fatal(&std::io::Error::other("malformed virtio header")));
        assert!(is_fatal(&std::io::Error::from_raw_os_error(libc::EBADFD)));
    }

    #[test]
    fn the_first_fault_is_kept() {
        let fault = Fault::default();
        assert_eq!(fault.get(), None);
        fault.record("t", "reading the TUN device: gone".into());
        fault.record("t", "later".into());
        assert_eq!(fault.get().as_deref(), Some("reading the TUN device: gone"));
    }
}
