//! The IKE SA state machine (RFC 7296), without I/O.
//!
//! One [`IkeSa`] is one IKE SA and the CHILD_SAs it negotiated. The driver (netstack)
//! feeds it datagrams with [`IkeSa::handle`] and the passing of time with
//! [`IkeSa::poll`], and carries out the [`Output`]s: datagrams to send, CHILD_SAs to
//! install or remove, the SA's end. An IKE rekey happens inside the same value: it takes
//! the new SPIs and keys, and the old SA retires (answering or sending its Delete) until
//! [`Output::SpisRetired`].
//!
//! - `init.rs`: IKE_SA_INIT and IKE_AUTH, both roles.
//! - `create_child.rs`: CREATE_CHILD_SA: CHILD_SA rekey and creation, IKE SA rekey.
//! - `informational.rs`: DPD, Delete, and notifies in INFORMATIONAL exchanges.

mod config;
mod create_child;
mod informational;
mod init;
mod nat;

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};

pub use config::{LocalAuth, RemoteAuth, Retransmit, SaConfig};

use crate::algorithms::{DhGroup, EncrAlg};
use crate::crypto::auth::SignatureHash;
use crate::crypto::keys::{ChildKeys, IkeKeys};
use crate::crypto::transform::Transform;
use crate::crypto::CryptoError;
use crate::message::{
    self, notify, Decoder, ExchangeType, Message, Notify, Payload, Protected, TrafficSelector,
};
use crate::proposal::{EspSuite, IkeSuite};

/// The UDP port IKE moves to, and ESP is encapsulated on, once a NAT is detected.
pub const NAT_T_PORT: u16 = 4500;
/// Largest IKE message sent unfragmented once fragmentation is agreed: 1280 bytes (the
/// IPv6 minimum MTU) less IPv6, UDP and the non-ESP marker.
pub const FRAGMENT_DATAGRAM: usize = 1280 - 40 - 8 - 4;
/// Nonce length (RFC 7296 §2.10: at least half the PRF key size, at least 16).
const NONCE_LEN: usize = 32;
/// Jitter taken off rekey times, as a fraction, so both ends do not rekey at once.
const REKEY_JITTER: f64 = 0.1;
/// How long a retiring (rekeyed) IKE SA waits for its Delete exchange.
const RETIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// The local and remote UDP endpoints an IKE SA talks over. The local address is the
/// concrete source address (never unspecified): NAT detection hashes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Path {
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

impl Path {
    /// Datagrams on this path carry the non-ESP marker (RFC 3948).
    pub fn is_nat_t(&self) -> bool {
        self.local.port() == NAT_T_PORT
    }

    fn to_nat_t(self) -> Path {
        let mut path = self;
        path.local.set_port(NAT_T_PORT);
        path.remote.set_port(NAT_T_PORT);
        path
    }
}

/// What the driver must do.
#[derive(Debug)]
pub enum Output {
    /// Send an IKE message (the driver adds the non-ESP marker on a NAT-T path).
    Send {
        path: Path,
        datagram: Vec<u8>,
    },
    /// Install a CHILD_SA. With `replaces`, the new one takes over outbound traffic at
    /// once and the old one's inbound side stays until its [`Output::ChildDown`].
    ChildUp(Box<NewChild>),
    ChildDown {
        spi_in: u32,
        spi_out: u32,
    },
    /// The IKE SA authenticated both ways.
    Established,
    /// The path changed (NAT-T switch, or the peer's NAT mapping moved): ESP follows it.
    PathChanged(Path),
    /// The peer said INITIAL_CONTACT: other IKE SAs with this peer are stale.
    InitialContact,
    /// The IKE SA was rekeyed: it now also answers to new SPIs ([`IkeSa::our_spis`]).
    IkeRekeyed,
    /// The SPIs of an IKE SA replaced by a rekey are no longer in use.
    SpisRetired {
        spi_i: u64,
        spi_r: u64,
    },
    /// A CHILD_SA (or its rekey) could not be set up; the IKE SA stays. Says why.
    ChildFailed(Failure),
    /// The IKE SA is gone (with every CHILD_SA: no ChildDown follows). `failure` says why,
    /// or is `None` for an orderly close.
    Closed {
        failure: Option<Failure>,
    },
}

/// A CHILD_SA ready to carry ESP.
pub struct NewChild {
    pub spi_in: u32,
    pub spi_out: u32,
    pub suite: EspSuite,
    pub inbound: Transform,
    pub outbound: Transform,
    pub local_ts: Vec<TrafficSelector>,
    pub remote_ts: Vec<TrafficSelector>,
    /// ESP in UDP (RFC 3948) on the IKE SA's path, rather than bare ESP.
    pub encap: bool,
    pub path: Path,
    /// The inbound SPI of the CHILD_SA this one rekeys.
    pub replaces: Option<u32>,
}

/// A CHILD_SA as an exchange negotiated it, before it has keys.
struct ChildTerms {
    spi_in: u32,
    spi_out: u32,
    suite: EspSuite,
    local_ts: Vec<TrafficSelector>,
    remote_ts: Vec<TrafficSelector>,
    replaces: Option<u32>,
}

impl IkeSa {
    /// Keys a negotiated CHILD_SA (RFC 7296 §2.17) from SK_d, the exchange's nonces and its
    /// PFS secret; `initiator` is our role in that exchange, which orders the keys.
    fn keyed_child(
        &self,
        keys: &Keys,
        terms: ChildTerms,
        pfs: Option<&[u8]>,
        (ni, nr): (&[u8], &[u8]),
        initiator: bool,
    ) -> Result<NewChild, CryptoError> {
        let (outbound, inbound) = ChildKeys::derive(
            keys.suite.prf,
            &keys.ike_keys.sk_d,
            &terms.suite,
            pfs,
            ni,
            nr,
        )
        .transforms(&terms.suite, initiator)?;
        Ok(NewChild {
            spi_in: terms.spi_in,
            spi_out: terms.spi_out,
            suite: terms.suite,
            inbound,
            outbound,
            local_ts: terms.local_ts,
            remote_ts: terms.remote_ts,
            encap: self.encap(),
            path: self.path,
            replaces: terms.replaces,
        })
    }
}

impl fmt::Debug for NewChild {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewChild")
            .field("spi_in", &format_args!("{:08x}", self.spi_in))
            .field("spi_out", &format_args!("{:08x}", self.spi_out))
            .field("suite", &self.suite)
            .field("encap", &self.encap)
            .field("replaces", &self.replaces)
            .finish_non_exhaustive()
    }
}

/// Why an IKE SA or CHILD_SA could not be set up or was torn down, in words an operator
/// can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The peer rejected our authentication (it sent AUTHENTICATION_FAILED).
    AuthenticationRejected,
    /// The peer's authentication did not verify here; the text says what.
    AuthenticationFailed(String),
    /// No proposal acceptable to both sides; `ike` tells which SA.
    NoProposalChosen {
        ike: bool,
    },
    TsUnacceptable,
    /// No answer to a request after every retransmission.
    PeerUnreachable,
    /// DPD got no answer.
    DeadPeer,
    /// The peer answered with another error notify.
    PeerError(u16),
    /// The peer sent something malformed or out of protocol.
    Protocol(String),
    /// Our own configuration cannot be used (key mismatch, ...).
    Local(String),
    /// The peer deleted the IKE SA.
    DeletedByPeer,
    /// A responder SA that was never authenticated.
    HalfOpenTimeout,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::AuthenticationRejected => {
                f.write_str("AUTHENTICATION_FAILED: the peer rejected our authentication")
            }
            Failure::AuthenticationFailed(why) => {
                write!(
                    f,
                    "AUTHENTICATION_FAILED: the peer's authentication failed: {why}"
                )
            }
            Failure::NoProposalChosen { ike: true } => {
                f.write_str("NO_PROPOSAL_CHOSEN: no IKE proposal acceptable to both sides")
            }
            Failure::NoProposalChosen { ike: false } => {
                f.write_str("NO_PROPOSAL_CHOSEN: no ESP proposal acceptable to both sides")
            }
            Failure::TsUnacceptable => {
                f.write_str("TS_UNACCEPTABLE: the traffic selectors do not overlap")
            }
            Failure::PeerUnreachable => f.write_str("peer unreachable: no answer to IKE requests"),
            Failure::DeadPeer => f.write_str("peer unreachable: dead peer detection got no answer"),
            Failure::PeerError(kind) => match notify::name(*kind) {
                Some(name) => write!(f, "{name}: the peer refused the request"),
                None => write!(f, "the peer refused the request with error notify {kind}"),
            },
            Failure::Protocol(why) => write!(f, "protocol error: {why}"),
            Failure::Local(why) => write!(f, "local configuration: {why}"),
            Failure::DeletedByPeer => f.write_str("the peer deleted the IKE SA"),
            Failure::HalfOpenTimeout => {
                f.write_str("the peer started IKE_SA_INIT but never authenticated")
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Initiator: IKE_SA_INIT sent.
    InitSent,
    /// Initiator: IKE_AUTH sent.
    AuthSent,
    /// Responder: IKE_SA_INIT answered, waiting for IKE_AUTH.
    HalfOpen,
    Established,
    /// Delete sent, or the SA failed; nothing more happens.
    Closing,
    Closed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::InitSent => "connecting",
            State::AuthSent => "authenticating",
            State::HalfOpen => "half-open",
            State::Established => "established",
            State::Closing => "closing",
            State::Closed => "closed",
        }
    }
}

/// A CHILD_SA as the IKE SA tracks it (the keys live in the data plane).
#[derive(Debug, Clone)]
struct Child {
    spi_in: u32,
    spi_out: u32,
    suite: EspSuite,
    local_ts: Vec<TrafficSelector>,
    remote_ts: Vec<TrafficSelector>,
    established: Instant,
    rekey_at: Instant,
    /// Hard end if a rekey never succeeds.
    expire_at: Instant,
    /// Bytes through the SA as the data plane last reported them.
    bytes: u64,
    state: ChildState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChildState {
    Installed,
    /// Our rekey request is queued or in flight.
    Rekeying,
    /// Replaced by a rekey; our Delete is queued or in flight, or the peer's is awaited.
    Rekeyed,
}

/// The keys and message counters of one IKE SA generation (a rekey makes a new one).
struct Keys {
    spi_i: u64,
    spi_r: u64,
    /// We are the initiator of this generation (the I flag; a rekey can swap roles).
    initiator: bool,
    suite: IkeSuite,
    ike_keys: IkeKeys,
    outbound: Transform,
    inbound: Transform,
    decoder: Decoder,
    /// IV counter for GCM (unique per key); CBC takes random IVs.
    iv_counter: u64,
    next_request_id: u32,
    /// The ID the peer's next request must carry.
    next_peer_id: u32,
    /// Our answer to the peer's last request, resent when the request is retransmitted.
    last_response: Option<(u32, Vec<Vec<u8>>)>,
}

impl Keys {
    /// Keys for SPIs `spi_i`/`spi_r`, with nothing sent or received under them yet.
    fn new(
        (spi_i, spi_r): (u64, u64),
        initiator: bool,
        suite: IkeSuite,
        ike_keys: IkeKeys,
        (outbound, inbound): (Transform, Transform),
    ) -> Keys {
        Keys {
            spi_i,
            spi_r,
            initiator,
            suite,
            ike_keys,
            outbound,
            inbound,
            decoder: Decoder::new(),
            iv_counter: 0,
            next_request_id: 0,
            next_peer_id: 0,
            last_response: None,
        }
    }

    fn our_spi(&self) -> u64 {
        if self.initiator {
            self.spi_i
        } else {
            self.spi_r
        }
    }
}

/// A request of ours waiting for its response (the window is 1).
struct Pending {
    message_id: u32,
    datagrams: Vec<Vec<u8>>,
    request: Request,
    sent: u32,
    deadline: Instant,
    /// When the request is given up; `None` follows the retransmit policy.
    give_up: Option<Instant>,
}

/// Requests we make once the SA is established, queued while another is in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Request {
    /// IKE_SA_INIT or IKE_AUTH.
    Setup,
    Dpd,
    RekeyChild {
        spi_in: u32,
        group: Option<DhGroup>,
    },
    RekeyIke {
        group: DhGroup,
    },
    DeleteChild {
        spi_in: u32,
    },
    DeleteIke,
}

/// State of an exchange in flight that the response completes.
enum Exchange {
    None,
    /// Our IKE_SA_INIT and what IKE_AUTH needs from it.
    Init(Box<init::InitiatorInit>),
    /// Our IKE_AUTH, waiting for the answer.
    Auth(Box<init::AuthContext>),
    /// Our CREATE_CHILD_SA rekeying a CHILD_SA.
    RekeyChild(Box<create_child::ChildRekey>),
    /// Our CREATE_CHILD_SA rekeying the IKE SA.
    RekeyIke(Box<create_child::IkeRekey>),
}

/// A rekeyed IKE SA still answering (or sending) its Delete.
struct Retiring {
    keys: Keys,
    until: Instant,
    pending: Option<Pending>,
}

/// One IKE SA and its CHILD_SAs.
pub struct IkeSa {
    config: Arc<SaConfig>,
    state: State,
    path: Path,
    /// A NAT was detected (or forced): IKE on 4500, ESP in UDP.
    nat_t: bool,
    /// None until IKE_SA_INIT completes; the SPIs before that are in `spi_i`.
    keys: Option<Keys>,
    spi_i: u64,
    spi_r: u64,
    /// The nonces of the exchange that made the current keys (IKE_SA_INIT or IKE rekey).
    ni: Vec<u8>,
    nr: Vec<u8>,
    exchange: Exchange,
    pending: Option<Pending>,
    queue: VecDeque<Request>,
    children: Vec<Child>,
    retiring: Option<Retiring>,
    /// For a responder: IKE_SA_INIT's data until IKE_AUTH arrives.
    responder_init: Option<Box<init::ResponderInit>>,
    /// New keys of an IKE rekey we answered, taken into use once the answer is sent,
    /// with that exchange's nonces.
    swap_after_answer: Option<Box<Keys>>,
    pending_nonces: Option<(Vec<u8>, Vec<u8>)>,
    /// Completed CHILD_SA rekeys whose old SA still exists (collision detection).
    rekeys: Vec<create_child::RekeyRecord>,
    peer_fragmentation: bool,
    peer_hashes: Vec<SignatureHash>,
    established: Option<Instant>,
    ike_rekey_at: Option<Instant>,
    last_inbound: Instant,
    created: Instant,
    failure: Option<Failure>,
    rng: SystemRandom,
    outputs: Vec<Output>,
}

/// What [`IkeSa::status`] shows.
#[derive(Debug, Clone)]
pub struct IkeSaStatus {
    pub state: State,
    pub initiator: bool,
    pub spi_i: u64,
    pub spi_r: u64,
    pub suite: Option<IkeSuite>,
    pub path: Path,
    pub nat_t: bool,
    pub established: Option<Instant>,
    pub rekey_at: Option<Instant>,
    pub children: Vec<ChildStatus>,
    pub failure: Option<Failure>,
}

#[derive(Debug, Clone)]
pub struct ChildStatus {
    pub spi_in: u32,
    pub spi_out: u32,
    pub suite: EspSuite,
    pub local_ts: Vec<TrafficSelector>,
    pub remote_ts: Vec<TrafficSelector>,
    pub established: Instant,
    pub rekey_at: Instant,
    /// Replaced by a rekey and about to be deleted.
    pub rekeyed: bool,
}

/// An IKE_SA_INIT request that creates no state: answered statelessly (cookie,
/// INVALID_KE_PAYLOAD, NO_PROPOSAL_CHOSEN) or dropped.
#[derive(Debug)]
pub enum Refusal {
    /// Send this answer and forget the request. `failure` says why, when the peer cannot
    /// succeed without a change of configuration (not for INVALID_KE_PAYLOAD, which it
    /// follows by itself).
    Answer {
        datagram: Vec<u8>,
        failure: Option<Failure>,
    },
    /// Not an acceptable IKE_SA_INIT at all; drop it. The text says why.
    Drop(String),
}

impl IkeSa {
    /// Starts an IKE SA as initiator: the IKE_SA_INIT request is in the outputs.
    pub fn initiate(config: Arc<SaConfig>, path: Path, now: Instant) -> Result<IkeSa, Failure> {
        let mut sa = IkeSa::new(config, path, now);
        sa.spi_i = sa.random_spi();
        init::start_initiator(&mut sa, now)?;
        Ok(sa)
    }

    /// Answers an IKE_SA_INIT request as responder. `Err` means no SA was created; its
    /// answer (if any) goes back to the sender.
    pub fn respond(
        config: Arc<SaConfig>,
        path: Path,
        request: &[u8],
        now: Instant,
    ) -> Result<IkeSa, Refusal> {
        let mut sa = IkeSa::new(config, path, now);
        init::respond_init(&mut sa, request, now)?;
        Ok(sa)
    }

    fn new(config: Arc<SaConfig>, path: Path, now: Instant) -> IkeSa {
        IkeSa {
            config,
            state: State::InitSent,
            path,
            nat_t: false,
            keys: None,
            spi_i: 0,
            spi_r: 0,
            ni: Vec::new(),
            nr: Vec::new(),
            exchange: Exchange::None,
            pending: None,
            queue: VecDeque::new(),
            children: Vec::new(),
            retiring: None,
            responder_init: None,
            swap_after_answer: None,
            pending_nonces: None,
            rekeys: Vec::new(),
            peer_fragmentation: false,
            peer_hashes: Vec::new(),
            established: None,
            ike_rekey_at: None,
            last_inbound: now,
            created: now,
            failure: None,
            rng: SystemRandom::new(),
            outputs: Vec::new(),
        }
    }

    /// The outputs produced so far, in order.
    pub fn take_outputs(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.outputs)
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// The current SPIs (initiator's, responder's).
    pub fn spis(&self) -> (u64, u64) {
        match &self.keys {
            Some(keys) => (keys.spi_i, keys.spi_r),
            None => (self.spi_i, self.spi_r),
        }
    }

    /// The SPIs we chose (ours in the current SA and in a retiring one): a datagram whose
    /// header carries one of them, in our role's place, belongs to this SA.
    pub fn our_spis(&self) -> Vec<u64> {
        let mut spis = vec![match &self.keys {
            Some(keys) => keys.our_spi(),
            None => self.spi_i,
        }];
        if let Some(retiring) = &self.retiring {
            spis.push(retiring.keys.our_spi());
        }
        spis
    }

    pub fn path(&self) -> Path {
        self.path
    }

    pub fn status(&self) -> IkeSaStatus {
        let (spi_i, spi_r) = self.spis();
        IkeSaStatus {
            state: self.state,
            initiator: self
                .keys
                .as_ref()
                .map(|k| k.initiator)
                .unwrap_or(self.spi_r == 0 || self.state == State::InitSent),
            spi_i,
            spi_r,
            suite: self.keys.as_ref().map(|k| k.suite),
            path: self.path,
            nat_t: self.nat_t,
            established: self.established,
            rekey_at: self.ike_rekey_at,
            children: self
                .children
                .iter()
                .map(|c| ChildStatus {
                    spi_in: c.spi_in,
                    spi_out: c.spi_out,
                    suite: c.suite,
                    local_ts: c.local_ts.clone(),
                    remote_ts: c.remote_ts.clone(),
                    established: c.established,
                    rekey_at: c.rekey_at,
                    rekeyed: c.state == ChildState::Rekeyed,
                })
                .collect(),
            failure: self.failure.clone(),
        }
    }

    /// The data plane saw ESP from the peer: it is alive, DPD can wait.
    pub fn note_inbound_traffic(&mut self, now: Instant) {
        if now > self.last_inbound {
            self.last_inbound = now;
        }
    }

    /// The data plane's byte count of a CHILD_SA (both directions), for rekey by volume.
    pub fn note_child_bytes(&mut self, spi_in: u32, bytes: u64) {
        if let Some(child) = self.children.iter_mut().find(|c| c.spi_in == spi_in) {
            child.bytes = bytes;
        }
    }

    /// The keys, which every exchange after IKE_SA_INIT needs.
    fn keys(&self) -> Result<&Keys, Failure> {
        self.keys
            .as_ref()
            .ok_or_else(|| Failure::Protocol("no keys".into()))
    }

    /// Starts a rekey of every installed CHILD_SA now (operator request or test).
    pub fn rekey_children(&mut self, now: Instant) {
        let spis: Vec<u32> = self
            .children
            .iter()
            .filter(|c| c.state == ChildState::Installed)
            .map(|c| c.spi_in)
            .collect();
        for spi_in in spis {
            self.queue_child_rekey(spi_in);
        }
        self.flush_queue(now);
    }

    /// Starts a rekey of the IKE SA now.
    pub fn rekey_ike(&mut self, now: Instant) {
        if let Some(keys) = &self.keys {
            let group = keys.suite.dh;
            if self.state == State::Established
                && !self
                    .queue
                    .iter()
                    .any(|r| matches!(r, Request::RekeyIke { .. }))
            {
                self.queue.push_back(Request::RekeyIke { group });
            }
        }
        self.flush_queue(now);
    }

    /// Deletes the IKE SA (and so its CHILD_SAs) in an orderly way.
    pub fn close(&mut self, now: Instant) {
        match self.state {
            State::Established => {
                self.queue.clear();
                self.queue.push_back(Request::DeleteIke);
                self.flush_queue(now);
            }
            State::Closing | State::Closed => {}
            _ => self.finish(None),
        }
    }

    /// When [`IkeSa::poll`] next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let mut deadlines: Vec<Instant> = Vec::new();
        if matches!(self.state, State::Closed) {
            return None;
        }
        if let Some(pending) = &self.pending {
            deadlines.push(pending.deadline);
        }
        if let Some(retiring) = &self.retiring {
            deadlines.push(retiring.until);
            if let Some(pending) = &retiring.pending {
                deadlines.push(pending.deadline);
            }
        }
        if self.state == State::HalfOpen {
            deadlines.push(self.created + self.config.half_open_timeout);
        }
        if self.state == State::Established {
            if let Some(at) = self.ike_rekey_at {
                deadlines.push(at);
            }
            for child in &self.children {
                if child.state == ChildState::Installed {
                    deadlines.push(child.rekey_at);
                }
                deadlines.push(child.expire_at);
            }
            if let (Some(delay), None) = (self.config.dpd_delay, &self.pending) {
                deadlines.push(self.last_inbound + delay);
            }
        }
        deadlines.into_iter().min()
    }

    /// Retransmits, gives up on silent peers, starts rekeys and DPD that are due.
    pub fn poll(&mut self, now: Instant) {
        self.poll_retiring(now);
        if self.state == State::Closed {
            return;
        }
        if self.state == State::HalfOpen && now >= self.created + self.config.half_open_timeout {
            self.finish(Some(Failure::HalfOpenTimeout));
            return;
        }
        if let Some(pending) = &mut self.pending {
            if now >= pending.deadline {
                let give_up = match pending.give_up {
                    Some(at) => now >= at,
                    None => pending.sent > self.config.retransmit.tries,
                };
                if give_up {
                    let failure = match pending.request {
                        Request::Dpd => Some(Failure::DeadPeer),
                        // The peer never confirmed our Delete: gone either way.
                        Request::DeleteIke => self.failure.clone(),
                        _ => Some(Failure::PeerUnreachable),
                    };
                    self.pending = None;
                    self.finish(failure);
                    return;
                }
                let wait = match pending.give_up {
                    Some(at) => {
                        let step = self.config.dpd_delay.unwrap_or(Duration::from_secs(3)) / 3;
                        step.min(at.saturating_duration_since(now))
                    }
                    None => self.config.retransmit.wait(pending.sent),
                };
                pending.sent += 1;
                pending.deadline = now + wait;
                let datagrams = pending.datagrams.clone();
                for datagram in datagrams {
                    self.send(datagram);
                }
            }
        }
        if self.state != State::Established {
            return;
        }
        self.expire_children(now);
        if self.state != State::Established {
            return;
        }
        if self.ike_rekey_at.is_some_and(|at| now >= at) {
            self.ike_rekey_at = None;
            self.rekey_ike(now);
        }
        let due: Vec<u32> = self
            .children
            .iter()
            .filter(|c| {
                c.state == ChildState::Installed
                    && (now >= c.rekey_at
                        || self
                            .config
                            .child_rekey_bytes
                            .is_some_and(|limit| c.bytes >= limit))
            })
            .map(|c| c.spi_in)
            .collect();
        for spi_in in due {
            self.queue_child_rekey(spi_in);
        }
        if let Some(delay) = self.config.dpd_delay {
            if self.pending.is_none() && self.queue.is_empty() && now >= self.last_inbound + delay {
                self.queue.push_back(Request::Dpd);
            }
        }
        self.flush_queue(now);
    }

    /// Feeds one IKE message (without the non-ESP marker) that arrived on `path`.
    pub fn handle(&mut self, path: Path, datagram: &[u8], now: Instant) {
        if self.state == State::Closed {
            return;
        }
        let header = match message::decode_header(datagram) {
            Ok(header) => header,
            Err(_) => return,
        };
        if let Some(retiring) = &self.retiring {
            if (header.spi_i, header.spi_r) == (retiring.keys.spi_i, retiring.keys.spi_r) {
                informational::handle_retiring(self, path, datagram, &header, now);
                return;
            }
        }
        if header.exchange == ExchangeType::IkeSaInit {
            if header.response && self.state == State::InitSent {
                init::handle_init_response(self, path, datagram, now);
            } else if !header.response {
                // A retransmitted IKE_SA_INIT request: answer it again.
                if let Some(init) = &self.responder_init {
                    let response = init.response.clone();
                    self.send_on(path, response);
                }
            }
            return;
        }
        let Some(keys) = &self.keys else {
            return;
        };
        if (header.spi_i, header.spi_r) != (keys.spi_i, keys.spi_r) {
            return;
        }
        // A message from the peer has the I flag set exactly when we are not the initiator.
        if header.initiator == keys.initiator {
            return;
        }
        if header.response {
            let expected = self.pending.as_ref().map(|p| p.message_id);
            if expected != Some(header.message_id) {
                return;
            }
        } else {
            if let Some((id, answer)) = &keys.last_response {
                if *id == header.message_id {
                    let answer = answer.clone();
                    for datagram in answer {
                        self.send_on(path, datagram);
                    }
                    return;
                }
            }
            if header.message_id != keys.next_peer_id {
                return;
            }
        }
        let message = {
            let Some(keys) = self.keys.as_mut() else {
                return;
            };
            match keys.decoder.decode_protected(datagram, &keys.inbound) {
                Ok(Protected::Complete(message)) => message,
                Ok(Protected::Partial) | Err(_) => return,
            }
        };
        self.last_inbound = now;
        self.follow_peer(path);
        if message.response {
            let request = self.pending.take().map(|p| p.request);
            self.handle_response(request, message, now);
        } else {
            self.handle_request(message, now);
            if let Some(keys) = self.swap_after_answer.take() {
                create_child::swap_keys(self, *keys, now);
            }
            if self.state == State::Closing && self.pending.is_none() {
                self.finish(self.failure.clone());
            }
        }
        self.flush_queue(now);
    }

    /// A responder moves to the path the peer authenticated messages come from (NAT-T
    /// switch to 4500, or a NAT mapping that changed).
    fn follow_peer(&mut self, path: Path) {
        if path != self.path && (self.nat_t || path.is_nat_t()) {
            if path.is_nat_t() {
                self.nat_t = true;
            }
            self.path = path;
            self.outputs.push(Output::PathChanged(path));
        }
    }

    fn handle_response(&mut self, request: Option<Request>, message: Message, now: Instant) {
        match std::mem::replace(&mut self.exchange, Exchange::None) {
            Exchange::Auth(context) => init::handle_auth_response(self, *context, message, now),
            Exchange::RekeyChild(rekey) => {
                create_child::handle_child_rekey_response(self, *rekey, message, now)
            }
            Exchange::RekeyIke(rekey) => {
                create_child::handle_ike_rekey_response(self, *rekey, message, now)
            }
            Exchange::Init(_) | Exchange::None => {
                informational::handle_informational_response(self, request, message, now)
            }
        }
    }

    fn handle_request(&mut self, message: Message, now: Instant) {
        let id = message.message_id;
        // RFC 7296 §2.5: a critical payload we do not know rejects the whole message,
        // before any of it is acted on.
        let critical = message.payloads.iter().find_map(|p| match p {
            Payload::Unknown {
                critical: true,
                kind,
                ..
            } => Some(*kind),
            _ => None,
        });
        let answer = match (critical, message.exchange) {
            (Some(kind), _) => vec![notify_payload(
                notify::UNSUPPORTED_CRITICAL_PAYLOAD,
                &[kind],
            )],
            (None, ExchangeType::IkeAuth) if self.state == State::HalfOpen => {
                init::handle_auth_request(self, &message, now)
            }
            (None, ExchangeType::CreateChildSa) if self.state == State::Established => {
                create_child::handle_request(self, &message, now)
            }
            (None, ExchangeType::Informational) => {
                informational::handle_request(self, &message, now)
            }
            _ => vec![notify_payload(notify::INVALID_SYNTAX, &[])],
        };
        self.answer(id, message.exchange, answer);
    }

    /// Sends our response to the peer's request `id` and remembers it for retransmits.
    fn answer(&mut self, id: u32, exchange: ExchangeType, payloads: Vec<Payload>) {
        let fragment = self.config.fragmentation && self.peer_fragmentation;
        let Some(keys) = &mut self.keys else {
            return;
        };
        let datagrams = answer_with(keys, &self.rng, fragment, id, exchange, payloads);
        for datagram in datagrams {
            self.send(datagram);
        }
    }

    /// Sends a request now (the window must be free).
    fn request(
        &mut self,
        exchange: ExchangeType,
        payloads: Vec<Payload>,
        request: Request,
        now: Instant,
    ) {
        let Some(keys) = &mut self.keys else {
            return;
        };
        let message_id = keys.next_request_id;
        keys.next_request_id = keys.next_request_id.wrapping_add(1);
        let message = Message {
            spi_i: keys.spi_i,
            spi_r: keys.spi_r,
            exchange,
            initiator: keys.initiator,
            response: false,
            message_id,
            payloads,
        };
        let datagrams = self.protect(&message);
        let give_up = match (&request, self.config.dpd_delay) {
            (Request::Dpd, Some(delay)) => Some(now + delay),
            _ => None,
        };
        let first_wait = match give_up {
            Some(at) => (at - now) / 3,
            None => self.config.retransmit.wait(0),
        };
        for datagram in &datagrams {
            self.send(datagram.clone());
        }
        self.pending = Some(Pending {
            message_id,
            datagrams,
            request,
            sent: 1,
            deadline: now + first_wait,
            give_up,
        });
    }

    /// Encrypts a message for the current keys, in fragments if both sides agreed.
    fn protect(&mut self, message: &Message) -> Vec<Vec<u8>> {
        let fragment = self.config.fragmentation && self.peer_fragmentation;
        let rng = self.rng.clone();
        let Some(keys) = &mut self.keys else {
            return Vec::new();
        };
        protect_with(keys, &rng, message, fragment)
    }

    fn send(&mut self, datagram: Vec<u8>) {
        let path = self.path;
        self.send_on(path, datagram);
    }

    fn send_on(&mut self, path: Path, datagram: Vec<u8>) {
        self.outputs.push(Output::Send { path, datagram });
    }

    /// Starts the next queued request if none is in flight.
    fn flush_queue(&mut self, now: Instant) {
        while self.pending.is_none() && self.state == State::Established {
            let Some(request) = self.queue.pop_front() else {
                return;
            };
            match request {
                Request::Dpd => {
                    self.request(ExchangeType::Informational, Vec::new(), Request::Dpd, now)
                }
                Request::DeleteChild { spi_in } => {
                    informational::send_delete_child(self, spi_in, now)
                }
                Request::DeleteIke => informational::send_delete_ike(self, now),
                Request::RekeyChild { spi_in, group } => {
                    create_child::start_child_rekey(self, spi_in, group, now)
                }
                Request::RekeyIke { group } => create_child::start_ike_rekey(self, group, now),
                Request::Setup => {}
            }
        }
    }

    fn queue_child_rekey(&mut self, spi_in: u32) {
        let group = self
            .config
            .esp_proposals
            .first()
            .and_then(|p| p.dh.first().copied());
        if let Some(child) = self.children.iter_mut().find(|c| c.spi_in == spi_in) {
            if child.state == ChildState::Installed {
                child.state = ChildState::Rekeying;
                self.queue.push_back(Request::RekeyChild { spi_in, group });
            }
        }
    }

    /// CHILD_SAs whose rekey never came: deleted at their hard lifetime.
    fn expire_children(&mut self, now: Instant) {
        let expired: Vec<u32> = self
            .children
            .iter()
            .filter(|c| now >= c.expire_at && c.state != ChildState::Rekeyed)
            .map(|c| c.spi_in)
            .collect();
        for spi_in in expired {
            if let Some(child) = self.children.iter_mut().find(|c| c.spi_in == spi_in) {
                child.state = ChildState::Rekeyed;
            }
            self.queue.push_back(Request::DeleteChild { spi_in });
        }
    }

    fn poll_retiring(&mut self, now: Instant) {
        let Some(retiring) = &mut self.retiring else {
            return;
        };
        let mut resend = Vec::new();
        if let Some(pending) = &mut retiring.pending {
            if now >= pending.deadline && pending.sent <= self.config.retransmit.tries {
                pending.deadline = now + self.config.retransmit.wait(pending.sent);
                pending.sent += 1;
                resend = pending.datagrams.clone();
            }
        }
        let done = now >= retiring.until;
        for datagram in resend {
            self.send(datagram);
        }
        if done {
            self.retire_done();
        }
    }

    fn retire_done(&mut self) {
        if let Some(retiring) = self.retiring.take() {
            self.outputs.push(Output::SpisRetired {
                spi_i: retiring.keys.spi_i,
                spi_r: retiring.keys.spi_r,
            });
        }
    }

    /// Ends the SA: every CHILD_SA goes with it.
    fn finish(&mut self, failure: Option<Failure>) {
        if self.state == State::Closed {
            return;
        }
        self.state = State::Closed;
        self.pending = None;
        self.queue.clear();
        self.children.clear();
        self.failure = failure.clone();
        self.retire_done();
        self.outputs.push(Output::Closed { failure });
    }

    /// A CHILD_SA could not be set up or rekeyed while the IKE SA stays up.
    fn child_failed(&mut self, failure: Failure) {
        self.outputs.push(Output::ChildFailed(failure.clone()));
        self.failure = Some(failure);
    }

    /// Records a CHILD_SA and tells the driver to install it.
    fn install_child(&mut self, child: NewChild, now: Instant) {
        let rekey_time = self.config.child_rekey_time;
        self.children.push(Child {
            spi_in: child.spi_in,
            spi_out: child.spi_out,
            suite: child.suite,
            local_ts: child.local_ts.clone(),
            remote_ts: child.remote_ts.clone(),
            established: now,
            rekey_at: now + self.jittered(rekey_time),
            expire_at: now + rekey_time.mul_f64(1.1),
            bytes: 0,
            state: ChildState::Installed,
        });
        self.outputs.push(Output::ChildUp(Box::new(child)));
    }

    fn remove_child(&mut self, spi_in: u32) {
        self.rekeys.retain(|r| r.old_spi_in != spi_in);
        if let Some(index) = self.children.iter().position(|c| c.spi_in == spi_in) {
            let child = self.children.remove(index);
            self.outputs.push(Output::ChildDown {
                spi_in: child.spi_in,
                spi_out: child.spi_out,
            });
        }
    }

    fn mark_established(&mut self, now: Instant) {
        self.state = State::Established;
        self.established = Some(now);
        self.ike_rekey_at = Some(now + self.jittered(self.config.ike_rekey_time));
        self.responder_init = None;
        self.outputs.push(Output::Established);
    }

    /// `time` less up to 10 %, so both ends do not rekey at the same moment.
    fn jittered(&self, time: Duration) -> Duration {
        let mut byte = [0u8; 2];
        let _ = self.rng.fill(&mut byte);
        let fraction = f64::from(u16::from_be_bytes(byte)) / f64::from(u16::MAX) * REKEY_JITTER;
        time.mul_f64(1.0 - fraction)
    }

    fn random_spi(&self) -> u64 {
        loop {
            let mut bytes = [0u8; 8];
            let _ = self.rng.fill(&mut bytes);
            let spi = u64::from_be_bytes(bytes);
            if spi != 0 {
                return spi;
            }
        }
    }

    /// A CHILD_SA SPI: never below 256 (reserved, RFC 4303 §2.1) and not in use here.
    fn random_child_spi(&self) -> u32 {
        loop {
            let mut bytes = [0u8; 4];
            let _ = self.rng.fill(&mut bytes);
            let spi = u32::from_be_bytes(bytes);
            if spi >= 256 && !self.children.iter().any(|c| c.spi_in == spi) {
                return spi;
            }
        }
    }

    fn nonce(&self) -> Vec<u8> {
        let mut nonce = vec![0u8; NONCE_LEN];
        let _ = self.rng.fill(&mut nonce);
        nonce
    }

    fn encap(&self) -> bool {
        self.nat_t
    }
}

/// Encrypts `message` under `keys` (fragmenting when agreed).
fn protect_with(
    keys: &mut Keys,
    rng: &SystemRandom,
    message: &Message,
    fragment: bool,
) -> Vec<Vec<u8>> {
    let gcm = matches!(keys.suite.encr, EncrAlg::AesGcm16 { .. });
    let counter = &mut keys.iv_counter;
    let mut next_iv = |iv: &mut [u8]| {
        if gcm {
            *counter += 1;
            let bytes = counter.to_be_bytes();
            let len = iv.len();
            let start = len.saturating_sub(8);
            iv[start..].copy_from_slice(&bytes[8 - (len - start)..]);
        } else {
            let _ = rng.fill(iv);
        }
    };
    let result = if fragment {
        message.encode_fragments(&keys.outbound, FRAGMENT_DATAGRAM, &mut next_iv)
    } else {
        let mut iv = vec![0u8; keys.outbound.iv_len()];
        next_iv(&mut iv);
        message
            .encode_protected(&keys.outbound, &iv)
            .map(|d| vec![d])
    };
    // Encoding our own message fails only on a bug (sizes are ours); nothing to send then.
    result.unwrap_or_default()
}

/// Encrypts our answer to the peer's request `id` under `keys`, and remembers it for the
/// peer's retransmissions.
fn answer_with(
    keys: &mut Keys,
    rng: &SystemRandom,
    fragment: bool,
    id: u32,
    exchange: ExchangeType,
    payloads: Vec<Payload>,
) -> Vec<Vec<u8>> {
    let message = Message {
        spi_i: keys.spi_i,
        spi_r: keys.spi_r,
        exchange,
        initiator: keys.initiator,
        response: true,
        message_id: id,
        payloads,
    };
    let datagrams = protect_with(keys, rng, &message, fragment);
    keys.next_peer_id = id.wrapping_add(1);
    keys.last_response = Some((id, datagrams.clone()));
    datagrams
}

fn notify_payload(kind: u16, data: &[u8]) -> Payload {
    Payload::Notify(Notify::new(kind, data.to_vec()))
}

/// The notifies of a message.
fn notifies(message: &Message) -> impl Iterator<Item = &Notify> {
    message.payloads.iter().filter_map(|p| match p {
        Payload::Notify(n) => Some(n),
        _ => None,
    })
}

impl Failure {
    /// What the peer's error notify `kind` says about the SA we asked for: the IKE SA
    /// (`ike`) or a CHILD_SA.
    fn from_notify(kind: u16, ike: bool) -> Failure {
        match kind {
            notify::NO_PROPOSAL_CHOSEN => Failure::NoProposalChosen { ike },
            notify::TS_UNACCEPTABLE if !ike => Failure::TsUnacceptable,
            kind => Failure::PeerError(kind),
        }
    }
}

/// The group an INVALID_KE_PAYLOAD notify asks for, if it names one we know.
fn requested_group(invalid_ke: &Notify) -> Option<DhGroup> {
    let id = invalid_ke.data.get(..2)?;
    DhGroup::from_id(u16::from_be_bytes([id[0], id[1]]))
}

/// The first error notify (types below 16384) of a response.
fn error_notify(message: &Message) -> Option<&Notify> {
    notifies(message).find(|n| n.is_error())
}

#[cfg(test)]
mod tests;
