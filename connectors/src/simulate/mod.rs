//! Protocol simulators for peers that cannot be installed here (Oracle TNS listener,
//! SAP NI gateway, SAProuter, Asterisk AMI). They are built from the same codecs as the
//! probes and follow the protocol facts documented in README.md; switches select
//! failure modes so tests (and users checking a firewall path) can see every outcome.

pub mod asterisk_ami;
pub mod oracle_tns;
pub mod sap_ni;
pub mod saprouter;
