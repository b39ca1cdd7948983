//! Proposals as the configuration states them, and the suites negotiation picks from them.
//!
//! A proposal lists acceptable algorithms per transform type; any combination of them is
//! acceptable (RFC 7296 §3.3). A suite is one algorithm per type: what both sides use.

use crate::algorithms::{DhGroup, EncrAlg, IntegAlg, PrfAlg};

/// One IKE proposal. `integ` is empty when every `encr` is AEAD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IkeProposal {
    pub encr: Vec<EncrAlg>,
    pub integ: Vec<IntegAlg>,
    pub prf: Vec<PrfAlg>,
    pub dh: Vec<DhGroup>,
}

/// One ESP proposal. `dh` lists the PFS groups for CHILD_SA rekeying (and for a
/// CREATE_CHILD_SA that creates a CHILD_SA); empty means no PFS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EspProposal {
    pub encr: Vec<EncrAlg>,
    pub integ: Vec<IntegAlg>,
    pub dh: Vec<DhGroup>,
}

/// The algorithms an IKE SA runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IkeSuite {
    pub encr: EncrAlg,
    /// `None` with an AEAD cipher.
    pub integ: Option<IntegAlg>,
    pub prf: PrfAlg,
    pub dh: DhGroup,
}

/// The algorithms a CHILD_SA (ESP) runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EspSuite {
    pub encr: EncrAlg,
    /// `None` with an AEAD cipher.
    pub integ: Option<IntegAlg>,
    /// The PFS group, if the CHILD_SA's keys came with their own exchange.
    pub dh: Option<DhGroup>,
}
