//! Proposals on the wire and choosing from them (RFC 7296 §2.7, §3.3).
//!
//! The initiator sends its configured proposals numbered from 1 in its order of
//! preference ([`ike_offer`], [`esp_offer`]). The responder takes the first of the
//! initiator's proposals that one of its own accepts and answers with that proposal
//! number and one transform of each type ([`select_ike`], [`select_esp`]); the initiator
//! checks that the answer is one of its offers ([`accept_ike`], [`accept_esp`]).
//!
//! Per §3.3.6 a proposal with a transform type Siteward does not know, or missing a
//! mandatory type, is unacceptable; a transform it does not know is skipped and the
//! others of its type are still considered.

use crate::algorithms::{DhGroup, EncrAlg, IntegAlg, PrfAlg, NO_ESN};
use crate::message::{protocol, transform_type as tt, ProposalWire, TransformWire};
use crate::proposal::{EspProposal, EspSuite, IkeProposal, IkeSuite};

/// The transform ID that stands for "none" in the INTEG and DH types.
const NONE_ID: u16 = 0;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NegotiationError {
    /// Responder: none of the peer's proposals is acceptable.
    #[error("no proposal chosen: the peer offered {offered}; we accept {ours}")]
    NoProposalChosen { offered: String, ours: String },
    /// Initiator: the responder's answer is not one of the proposals we sent.
    #[error("no proposal chosen: the peer's answer {answer} is not one of ours ({problem})")]
    BadAnswer { answer: String, problem: String },
}

/// The IKE SA proposals we offer, numbered from 1. `spi` is `None` in IKE_SA_INIT and
/// our new SPI in an IKE rekey. At most 255 proposals fit an SA payload; more are not sent.
pub fn ike_offer(ours: &[IkeProposal], spi: Option<u64>) -> Vec<ProposalWire> {
    let spi = spi
        .map(|spi| spi.to_be_bytes().to_vec())
        .unwrap_or_default();
    numbered(ours)
        .map(|(number, proposal)| {
            let mut transforms = cipher_transforms(&proposal.encr, &proposal.integ);
            transforms.extend(
                proposal
                    .prf
                    .iter()
                    .map(|p| plain(tt::PRF, p.transform_id())),
            );
            transforms.extend(proposal.dh.iter().map(|d| plain(tt::DH, d.id())));
            ProposalWire {
                number,
                protocol: protocol::IKE,
                spi: spi.clone(),
                transforms,
            }
        })
        .collect()
}

/// The ESP proposals we offer for a CHILD_SA whose inbound SPI is `spi`. ESN is always
/// NO_ESN; DH transforms are included only `with_pfs` (a CREATE_CHILD_SA carrying a KE).
pub fn esp_offer(ours: &[EspProposal], spi: u32, with_pfs: bool) -> Vec<ProposalWire> {
    numbered(ours)
        .map(|(number, proposal)| {
            let mut transforms = cipher_transforms(&proposal.encr, &proposal.integ);
            if with_pfs {
                transforms.extend(proposal.dh.iter().map(|d| plain(tt::DH, d.id())));
            }
            transforms.push(plain(tt::ESN, NO_ESN));
            ProposalWire {
                number,
                protocol: protocol::ESP,
                spi: spi.to_be_bytes().to_vec(),
                transforms,
            }
        })
        .collect()
}

fn numbered<T>(ours: &[T]) -> impl Iterator<Item = (u8, &T)> {
    (1..=u8::MAX).zip(ours)
}

/// ENCR transforms with their key lengths, then INTEG transforms.
fn cipher_transforms(encr: &[EncrAlg], integ: &[IntegAlg]) -> Vec<TransformWire> {
    let encr = encr.iter().map(|e| TransformWire {
        kind: tt::ENCR,
        id: e.transform_id(),
        key_len: Some(e.key_bits()),
    });
    let integ = integ.iter().map(|i| plain(tt::INTEG, i.transform_id()));
    encr.chain(integ).collect()
}

fn plain(kind: u8, id: u16) -> TransformWire {
    TransformWire {
        kind,
        id,
        key_len: None,
    }
}

/// Responder side: the first of the peer's proposals (in its order of preference) that
/// one of ours accepts; returns the suite and the single-proposal answer (same number,
/// `our_spi` as its SPI). Within a type the peer's order decides too. `our_spi` is
/// `None` in IKE_SA_INIT (the peer's proposals then carry no SPI) and our new SPI in an
/// IKE rekey (the peer's new SPI is in its proposal with the answer's number).
pub fn select_ike(
    ours: &[IkeProposal],
    offered: &[ProposalWire],
    our_spi: Option<u64>,
) -> Result<(IkeSuite, ProposalWire), NegotiationError> {
    select_ike_for_ke(ours, offered, our_spi, None)
}

/// [`select_ike`] for a request that carries a KE payload of `ke_group`: where the chosen
/// proposal allows several groups, that one is taken, which spares an INVALID_KE_PAYLOAD
/// round trip. The caller still compares the suite's group with the KE payload's.
pub fn select_ike_for_ke(
    ours: &[IkeProposal],
    offered: &[ProposalWire],
    our_spi: Option<u64>,
    ke_group: Option<u16>,
) -> Result<(IkeSuite, ProposalWire), NegotiationError> {
    let spi_len = if our_spi.is_some() { 8 } else { 0 };
    for offer in offered {
        if offer.protocol != protocol::IKE || offer.spi.len() != spi_len {
            continue;
        }
        for mine in ours {
            if let Some((suite, transforms)) = match_ike(mine, offer, ke_group) {
                let answer = ProposalWire {
                    number: offer.number,
                    protocol: protocol::IKE,
                    spi: our_spi
                        .map(|s| s.to_be_bytes().to_vec())
                        .unwrap_or_default(),
                    transforms,
                };
                return Ok((suite, answer));
            }
        }
    }
    Err(NegotiationError::NoProposalChosen {
        offered: describe_all(offered),
        ours: describe_all(&ike_offer(ours, None)),
    })
}

/// Responder side for a CHILD_SA: like [`select_ike`]. `pfs_group` is the group of the
/// exchange's KE payload: with `Some(g)` only proposals allowing DH `g` are acceptable;
/// with `None` only those without DH or allowing NONE. (IKE_AUTH never carries a KE, so
/// its first CHILD_SA is chosen with `None` whatever our proposals' PFS groups; a caller
/// that wants PFS in CREATE_CHILD_SA rejects a request without KE itself.)
/// Returns the suite, the peer's SPI and the answer carrying `our_spi`.
pub fn select_esp(
    ours: &[EspProposal],
    offered: &[ProposalWire],
    our_spi: u32,
    pfs_group: Option<DhGroup>,
) -> Result<(EspSuite, u32, ProposalWire), NegotiationError> {
    for offer in offered {
        let Some(peer_spi) = esp_spi(offer) else {
            continue;
        };
        for mine in ours {
            if let Some((suite, transforms)) = match_esp(mine, offer, pfs_group) {
                let answer = ProposalWire {
                    number: offer.number,
                    protocol: protocol::ESP,
                    spi: our_spi.to_be_bytes().to_vec(),
                    transforms,
                };
                return Ok((suite, peer_spi, answer));
            }
        }
    }
    Err(NegotiationError::NoProposalChosen {
        offered: describe_all(offered),
        ours: describe_all(&esp_offer(ours, 0, pfs_group.is_some())),
    })
}

fn esp_spi(proposal: &ProposalWire) -> Option<u32> {
    if proposal.protocol != protocol::ESP {
        return None;
    }
    let spi: [u8; 4] = proposal.spi.as_slice().try_into().ok()?;
    Some(u32::from_be_bytes(spi))
}

fn of_type(offer: &ProposalWire, kind: u8) -> impl Iterator<Item = &TransformWire> {
    offer.transforms.iter().filter(move |t| t.kind == kind)
}

/// The first transform of `kind` (in the peer's order) without attributes that `accept`
/// turns into one of ours.
fn first_plain<T>(
    offer: &ProposalWire,
    kind: u8,
    accept: impl Fn(u16) -> Option<T>,
) -> Option<(T, TransformWire)> {
    of_type(offer, kind)
        .filter(|t| t.key_len.is_none())
        .find_map(|t| accept(t.id).map(|value| (value, *t)))
}

/// ENCR and INTEG, chosen together: an AEAD cipher takes no integrity algorithm (the
/// answer repeats INTEG NONE if the peer offered it), any other needs one.
fn choose_cipher(
    offer: &ProposalWire,
    encr_ok: &[EncrAlg],
    integ_ok: &[IntegAlg],
) -> Option<(EncrAlg, Option<IntegAlg>, Vec<TransformWire>)> {
    of_type(offer, tt::ENCR).find_map(|t| {
        let encr = EncrAlg::from_transform(t.id, t.key_len)?;
        if !encr_ok.contains(&encr) {
            return None;
        }
        if encr.is_aead() {
            let none = of_type(offer, tt::INTEG).find(|i| i.id == NONE_ID && i.key_len.is_none());
            let mut chosen = vec![*t];
            chosen.extend(none.copied());
            return Some((encr, None, chosen));
        }
        let (integ, integ_t) = first_plain(offer, tt::INTEG, |id| {
            IntegAlg::from_transform_id(id).filter(|i| integ_ok.contains(i))
        })?;
        Some((encr, Some(integ), vec![*t, integ_t]))
    })
}

fn only_types(offer: &ProposalWire, allowed: &[u8]) -> bool {
    offer.transforms.iter().all(|t| allowed.contains(&t.kind))
}

fn match_ike(
    mine: &IkeProposal,
    offer: &ProposalWire,
    ke_group: Option<u16>,
) -> Option<(IkeSuite, Vec<TransformWire>)> {
    if !only_types(offer, &[tt::ENCR, tt::PRF, tt::INTEG, tt::DH]) {
        return None;
    }
    let prf = first_plain(offer, tt::PRF, |id| {
        PrfAlg::from_transform_id(id).filter(|p| mine.prf.contains(p))
    })?;
    let acceptable_group = |id: u16| DhGroup::from_id(id).filter(|g| mine.dh.contains(g));
    let dh = ke_group
        .and_then(|group| first_plain(offer, tt::DH, |id| (id == group).then_some(id)))
        .and_then(|(id, t)| Some((acceptable_group(id)?, t)))
        .or_else(|| first_plain(offer, tt::DH, acceptable_group))?;
    let (encr, integ, mut transforms) = choose_cipher(offer, &mine.encr, &mine.integ)?;
    transforms.push(prf.1);
    transforms.push(dh.1);
    let suite = IkeSuite {
        encr,
        integ,
        prf: prf.0,
        dh: dh.0,
    };
    Some((suite, transforms))
}

fn match_esp(
    mine: &EspProposal,
    offer: &ProposalWire,
    pfs_group: Option<DhGroup>,
) -> Option<(EspSuite, Vec<TransformWire>)> {
    if !only_types(offer, &[tt::ENCR, tt::INTEG, tt::DH, tt::ESN]) {
        return None;
    }
    let (encr, integ, mut transforms) = choose_cipher(offer, &mine.encr, &mine.integ)?;
    let dh_offered = of_type(offer, tt::DH).count() > 0;
    match pfs_group {
        Some(group) => {
            if !mine.dh.contains(&group) {
                return None;
            }
            let (_, t) = first_plain(offer, tt::DH, |id| (id == group.id()).then_some(()))?;
            transforms.push(t);
        }
        None if dh_offered => {
            let (_, t) = first_plain(offer, tt::DH, |id| (id == NONE_ID).then_some(()))?;
            transforms.push(t);
        }
        None => {}
    }
    // ESN is mandatory for ESP, but some peers leave it out, which means NO_ESN.
    if of_type(offer, tt::ESN).count() > 0 {
        let (_, t) = first_plain(offer, tt::ESN, |id| (id == NO_ESN).then_some(()))?;
        transforms.push(t);
    }
    let suite = EspSuite {
        encr,
        integ,
        dh: pfs_group,
    };
    Some((suite, transforms))
}

/// Initiator side: the responder's answer must be one proposal, with a number we used
/// and exactly one transform of each type, each from that proposal of ours. Returns the
/// suite and the answer (whose SPI is the responder's new SPI in an IKE rekey).
pub fn accept_ike(
    ours: &[IkeProposal],
    answer: &[ProposalWire],
) -> Result<(IkeSuite, ProposalWire), NegotiationError> {
    let (proposal, mine) = answered(ours, answer, protocol::IKE)?;
    let bad = |problem: &str| bad_answer(proposal, problem);
    if !(proposal.spi.is_empty() || proposal.spi.len() == 8) {
        return Err(bad("its SPI is neither empty nor 8 bytes"));
    }
    if !only_types(proposal, &[tt::ENCR, tt::PRF, tt::INTEG, tt::DH]) {
        return Err(bad("it has a transform type IKE does not use"));
    }
    let (encr, integ) = answered_cipher(proposal, &mine.encr, &mine.integ)?;
    let prf = single(proposal, tt::PRF, "PRF")?;
    let prf = PrfAlg::from_transform_id(prf.id)
        .filter(|p| mine.prf.contains(p) && prf.key_len.is_none())
        .ok_or_else(|| bad("its PRF is not one we offered"))?;
    let dh = single(proposal, tt::DH, "DH group")?;
    let dh = DhGroup::from_id(dh.id)
        .filter(|g| mine.dh.contains(g) && dh.key_len.is_none())
        .ok_or_else(|| bad("its DH group is not one we offered"))?;
    let suite = IkeSuite {
        encr,
        integ,
        prf,
        dh,
    };
    Ok((suite, proposal.clone()))
}

/// Initiator side for a CHILD_SA: as [`accept_ike`]; `with_pfs` as given to
/// [`esp_offer`]. Returns the suite and the responder's SPI.
pub fn accept_esp(
    ours: &[EspProposal],
    answer: &[ProposalWire],
    with_pfs: bool,
) -> Result<(EspSuite, u32), NegotiationError> {
    let (proposal, mine) = answered(ours, answer, protocol::ESP)?;
    let bad = |problem: &str| bad_answer(proposal, problem);
    let peer_spi = esp_spi(proposal).ok_or_else(|| bad("its SPI is not 4 bytes"))?;
    if !only_types(proposal, &[tt::ENCR, tt::INTEG, tt::DH, tt::ESN]) {
        return Err(bad("it has a transform type ESP does not use"));
    }
    let (encr, integ) = answered_cipher(proposal, &mine.encr, &mine.integ)?;
    let esn: Vec<_> = of_type(proposal, tt::ESN).collect();
    if esn.len() > 1 || esn.iter().any(|t| t.id != NO_ESN) {
        return Err(bad("it does not choose NO_ESN"));
    }
    let dh_transforms: Vec<_> = of_type(proposal, tt::DH).collect();
    let dh = if with_pfs && !mine.dh.is_empty() {
        let t = single(proposal, tt::DH, "DH group")?;
        Some(
            DhGroup::from_id(t.id)
                .filter(|g| mine.dh.contains(g) && t.key_len.is_none())
                .ok_or_else(|| bad("its DH group is not one we offered"))?,
        )
    } else {
        if dh_transforms.iter().any(|t| t.id != NONE_ID) {
            return Err(bad("it has a DH group though we offered none"));
        }
        None
    };
    let suite = EspSuite { encr, integ, dh };
    Ok((suite, peer_spi))
}

/// The single answered proposal and our proposal with its number.
fn answered<'a, T>(
    ours: &'a [T],
    answer: &'a [ProposalWire],
    protocol: u8,
) -> Result<(&'a ProposalWire, &'a T), NegotiationError> {
    let [proposal] = answer else {
        return Err(NegotiationError::BadAnswer {
            answer: describe_all(answer),
            problem: format!("{} proposals, expected exactly one", answer.len()),
        });
    };
    if proposal.protocol != protocol {
        return Err(bad_answer(proposal, "it is for another protocol"));
    }
    let mine = usize::from(proposal.number)
        .checked_sub(1)
        .and_then(|i| ours.get(i))
        .ok_or_else(|| bad_answer(proposal, "we sent no proposal with its number"))?;
    Ok((proposal, mine))
}

fn bad_answer(proposal: &ProposalWire, problem: &str) -> NegotiationError {
    NegotiationError::BadAnswer {
        answer: describe(proposal),
        problem: problem.to_string(),
    }
}

/// The one transform of `kind` in an answer.
fn single<'a>(
    proposal: &'a ProposalWire,
    kind: u8,
    name: &str,
) -> Result<&'a TransformWire, NegotiationError> {
    let mut found = of_type(proposal, kind);
    match (found.next(), found.next()) {
        (Some(t), None) => Ok(t),
        (None, _) => Err(bad_answer(proposal, &format!("it has no {name}"))),
        (Some(_), Some(_)) => Err(bad_answer(
            proposal,
            &format!("it has more than one {name}"),
        )),
    }
}

/// The answer's cipher: one ENCR we offered, and one INTEG we offered unless it is AEAD
/// (then none, or NONE).
fn answered_cipher(
    proposal: &ProposalWire,
    encr_ok: &[EncrAlg],
    integ_ok: &[IntegAlg],
) -> Result<(EncrAlg, Option<IntegAlg>), NegotiationError> {
    let t = single(proposal, tt::ENCR, "encryption algorithm")?;
    let encr = EncrAlg::from_transform(t.id, t.key_len)
        .filter(|e| encr_ok.contains(e))
        .ok_or_else(|| bad_answer(proposal, "its encryption algorithm is not one we offered"))?;
    let integ: Vec<_> = of_type(proposal, tt::INTEG).collect();
    if encr.is_aead() {
        if integ.len() > 1 || integ.iter().any(|t| t.id != NONE_ID) {
            return Err(bad_answer(
                proposal,
                "it pairs an AEAD cipher with an integrity algorithm",
            ));
        }
        return Ok((encr, None));
    }
    let t = single(proposal, tt::INTEG, "integrity algorithm")?;
    let integ = IntegAlg::from_transform_id(t.id)
        .filter(|i| integ_ok.contains(i) && t.key_len.is_none())
        .ok_or_else(|| bad_answer(proposal, "its integrity algorithm is not one we offered"))?;
    Ok((encr, Some(integ)))
}

/// Proposals the way strongSwan logs them (`IKE:aes256gcm16-prfsha256-x25519`), with
/// numbers for what Siteward does not know (`encr#3`).
pub fn describe_all(proposals: &[ProposalWire]) -> String {
    if proposals.is_empty() {
        return "nothing".to_string();
    }
    proposals
        .iter()
        .map(describe)
        .collect::<Vec<_>>()
        .join(", ")
}

/// One proposal, as [`describe_all`] does.
pub fn describe(proposal: &ProposalWire) -> String {
    let protocol = match proposal.protocol {
        protocol::IKE => "IKE".to_string(),
        protocol::ESP => "ESP".to_string(),
        protocol::AH => "AH".to_string(),
        other => format!("protocol#{other}"),
    };
    let mut names = Vec::new();
    for kind in [tt::ENCR, tt::INTEG, tt::PRF, tt::DH, tt::ESN] {
        names.extend(of_type(proposal, kind).map(transform_name));
    }
    names.extend(
        proposal
            .transforms
            .iter()
            .filter(|t| !(tt::ENCR..=tt::ESN).contains(&t.kind))
            .map(transform_name),
    );
    format!("{protocol}:{}", names.join("-"))
}

fn transform_name(t: &TransformWire) -> String {
    let known = match t.kind {
        tt::ENCR => EncrAlg::from_transform(t.id, t.key_len).map(EncrAlg::name),
        tt::INTEG if t.id == NONE_ID => Some("none".to_string()),
        tt::INTEG => IntegAlg::from_transform_id(t.id).map(|i| i.name().to_string()),
        tt::PRF => PrfAlg::from_transform_id(t.id).map(|p| p.name().to_string()),
        tt::DH if t.id == NONE_ID => Some("nodh".to_string()),
        tt::DH => DhGroup::from_id(t.id).map(|g| g.name().to_string()),
        tt::ESN if t.id == NO_ESN => Some("noesn".to_string()),
        tt::ESN if t.id == 1 => Some("esn".to_string()),
        _ => None,
    };
    known.unwrap_or_else(|| {
        let kind = match t.kind {
            tt::ENCR => "encr".to_string(),
            tt::PRF => "prf".to_string(),
            tt::INTEG => "integ".to_string(),
            tt::DH => "dh".to_string(),
            tt::ESN => "esn".to_string(),
            other => format!("type{other}"),
        };
        match t.key_len {
            Some(bits) => format!("{kind}#{}/{bits}", t.id),
            None => format!("{kind}#{}", t.id),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gcm(bits: u16) -> EncrAlg {
        EncrAlg::AesGcm16 { key_bits: bits }
    }

    fn cbc(bits: u16) -> EncrAlg {
        EncrAlg::AesCbc { key_bits: bits }
    }

    /// `aes256gcm16-prfsha256-x25519`
    fn ike_gcm() -> IkeProposal {
        IkeProposal {
            encr: vec![gcm(256)],
            integ: vec![],
            prf: vec![PrfAlg::HmacSha256],
            dh: vec![DhGroup::Curve25519],
        }
    }

    /// `aes256-sha256-prfsha256-modp2048`
    fn ike_cbc() -> IkeProposal {
        IkeProposal {
            encr: vec![cbc(256)],
            integ: vec![IntegAlg::HmacSha256_128],
            prf: vec![PrfAlg::HmacSha256],
            dh: vec![DhGroup::Modp2048],
        }
    }

    fn esp(encr: EncrAlg, integ: Option<IntegAlg>, dh: Vec<DhGroup>) -> EspProposal {
        EspProposal {
            encr: vec![encr],
            integ: integ.into_iter().collect(),
            dh,
        }
    }

    fn wire(
        number: u8,
        protocol: u8,
        spi: &[u8],
        transforms: &[(u8, u16, Option<u16>)],
    ) -> ProposalWire {
        ProposalWire {
            number,
            protocol,
            spi: spi.to_vec(),
            transforms: transforms
                .iter()
                .map(|&(kind, id, key_len)| TransformWire { kind, id, key_len })
                .collect(),
        }
    }

    /// What strongSwan's `aes128-sha1-modp1024` looks like: nothing Siteward accepts.
    fn legacy(number: u8) -> ProposalWire {
        wire(
            number,
            protocol::IKE,
            &[],
            &[
                (tt::ENCR, 12, Some(128)),
                (tt::INTEG, 2, None),
                (tt::PRF, 2, None),
                (tt::DH, 2, None),
            ],
        )
    }

    #[test]
    fn offers_list_every_transform_in_our_order() {
        let ours = IkeProposal {
            dh: vec![DhGroup::Curve25519, DhGroup::Ecp256],
            ..ike_gcm()
        };
        let offer = ike_offer(&[ours, ike_cbc()], None);
        assert_eq!(offer.len(), 2);
        assert_eq!(
            offer[0],
            wire(
                1,
                protocol::IKE,
                &[],
                &[
                    (tt::ENCR, 20, Some(256)),
                    (tt::PRF, 5, None),
                    (tt::DH, 31, None),
                    (tt::DH, 19, None)
                ]
            )
        );
        assert_eq!(offer[1].number, 2);
        assert_eq!(describe(&offer[1]), "IKE:aes256-sha256-prfsha256-modp2048");
        let rekey = ike_offer(&[ike_gcm()], Some(0x0102_0304_0506_0708));
        assert_eq!(rekey[0].spi, vec![1, 2, 3, 4, 5, 6, 7, 8]);

        let ours = [esp(gcm(256), None, vec![DhGroup::Ecp256])];
        let without = esp_offer(&ours, 0xc0ffee01, false);
        assert_eq!(
            without[0],
            wire(
                1,
                protocol::ESP,
                &[0xc0, 0xff, 0xee, 0x01],
                &[(tt::ENCR, 20, Some(256)), (tt::ESN, 0, None)]
            )
        );
        let with = esp_offer(&ours, 1, true);
        assert_eq!(describe(&with[0]), "ESP:aes256gcm16-ecp256-noesn");
    }

    impl ProposalWire {
        fn clone_with_number(mut self, number: u8) -> Self {
            self.number = number;
            self
        }
    }

    /// The peer's preference wins over ours: its second proposal (CBC) is taken although
    /// we list GCM first, because its first one is unacceptable to us.
    #[test]
    fn responder_takes_the_peers_first_acceptable_proposal() {
        let ours = [ike_gcm(), ike_cbc()];
        let peer = [ike_cbc(), ike_gcm()];
        let mut offered = vec![legacy(1)];
        offered.extend(ike_offer(&peer, None).into_iter().map(|p| {
            let number = p.number + 1;
            p.clone_with_number(number)
        }));
        let (suite, answer) = select_ike(&ours, &offered, None).unwrap();
        assert_eq!(answer.number, 2);
        assert_eq!(suite.encr, cbc(256));
        assert_eq!(suite.integ, Some(IntegAlg::HmacSha256_128));
        assert_eq!(suite.dh, DhGroup::Modp2048);
        assert_eq!(
            answer.transforms,
            wire(
                0,
                0,
                &[],
                &[
                    (tt::ENCR, 12, Some(256)),
                    (tt::INTEG, 12, None),
                    (tt::PRF, 5, None),
                    (tt::DH, 14, None)
                ]
            )
            .transforms
        );
    }

    #[test]
    fn within_a_proposal_the_peers_transform_order_decides() {
        let ours = [IkeProposal {
            encr: vec![gcm(256), gcm(128)],
            prf: vec![PrfAlg::HmacSha512, PrfAlg::HmacSha256],
            dh: vec![DhGroup::Curve25519, DhGroup::Ecp256],
            integ: vec![],
        }];
        let offered = [wire(
            1,
            protocol::IKE,
            &[],
            &[
                (tt::ENCR, 20, Some(128)),
                (tt::ENCR, 20, Some(256)),
                (tt::PRF, 5, None),
                (tt::PRF, 7, None),
                (tt::DH, 19, None),
                (tt::DH, 31, None),
            ],
        )];
        let (suite, _) = select_ike(&ours, &offered, None).unwrap();
        assert_eq!(suite.encr, gcm(128));
        assert_eq!(suite.prf, PrfAlg::HmacSha256);
        assert_eq!(suite.dh, DhGroup::Ecp256);
        // The KE payload's group is taken when the proposal allows it.
        let (suite, answer) = select_ike_for_ke(&ours, &offered, None, Some(31)).unwrap();
        assert_eq!(suite.dh, DhGroup::Curve25519);
        assert!(answer.transforms.contains(&TransformWire {
            kind: tt::DH,
            id: 31,
            key_len: None
        }));
        // A KE group the proposal does not allow changes nothing.
        let (suite, _) = select_ike_for_ke(&ours, &offered, None, Some(14)).unwrap();
        assert_eq!(suite.dh, DhGroup::Ecp256);
    }

    #[test]
    fn aead_needs_no_integrity_algorithm_and_cbc_needs_one() {
        let ours = [ike_gcm()];
        let offered = ike_offer(&ours, None);
        let (suite, answer) = select_ike(&ours, &offered, None).unwrap();
        assert_eq!(suite.integ, None);
        assert!(answer.transforms.iter().all(|t| t.kind != tt::INTEG));
        // INTEG NONE offered with AEAD is repeated in the answer.
        let mut with_none = offered.clone();
        with_none[0].transforms.push(TransformWire {
            kind: tt::INTEG,
            id: 0,
            key_len: None,
        });
        let (_, answer) = select_ike(&ours, &with_none, None).unwrap();
        assert!(answer.transforms.contains(&TransformWire {
            kind: tt::INTEG,
            id: 0,
            key_len: None
        }));
        assert_eq!(accept_ike(&ours, &[answer]).unwrap().0, suite);
        // CBC without an integrity algorithm is not a complete proposal.
        let cbc_only = [IkeProposal {
            integ: vec![],
            ..ike_cbc()
        }];
        let mut offered = ike_offer(&[ike_cbc()], None);
        offered[0].transforms.retain(|t| t.kind != tt::INTEG);
        assert!(select_ike(&[ike_cbc()], &offered, None).is_err());
        assert!(select_ike(&cbc_only, &offered, None).is_err());
    }

    #[test]
    fn no_overlap_is_no_proposal_chosen_with_both_sides_named() {
        let err = select_ike(&[ike_gcm()], &[legacy(1)], None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no proposal chosen: the peer offered IKE:aes128-integ#2-prf#2-dh#2; \
             we accept IKE:aes256gcm16-prfsha256-x25519"
        );
        let err = select_esp(
            &[esp(gcm(256), None, vec![])],
            &esp_offer(
                &[esp(cbc(128), Some(IntegAlg::HmacSha256_128), vec![])],
                1,
                false,
            ),
            2,
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("ESP:aes128-sha256-noesn"), "{err}");
    }

    #[test]
    fn unacceptable_proposals_are_skipped_not_fatal() {
        let ours = [ike_gcm()];
        let good = ike_offer(&ours, None).remove(0).clone_with_number(3);
        // An unknown transform type makes its proposal unacceptable (RFC 7296 §3.3.6).
        let mut unknown_type = good.clone().clone_with_number(1);
        unknown_type.transforms.push(TransformWire {
            kind: 6,
            id: 31,
            key_len: None,
        });
        // In IKE_SA_INIT a proposal must carry no SPI.
        let mut with_spi = good.clone().clone_with_number(2);
        with_spi.spi = vec![1; 8];
        let (_, answer) = select_ike(&ours, &[unknown_type, with_spi.clone(), good], None).unwrap();
        assert_eq!(answer.number, 3);
        // In a rekey it must carry one, and the answer carries ours.
        let (_, answer) = select_ike(&ours, &[with_spi], Some(0xabcd)).unwrap();
        assert_eq!(answer.spi, 0xabcd_u64.to_be_bytes().to_vec());
        // A PRF with a key length attribute is not one we know.
        let mut odd_prf = ike_offer(&ours, None);
        odd_prf[0].transforms[1].key_len = Some(256);
        assert!(select_ike(&ours, &odd_prf, None).is_err());
    }

    #[test]
    fn initiator_and_responder_agree() {
        let initiator = [ike_cbc(), ike_gcm()];
        let responder = [ike_gcm()];
        let (chosen, answer) = select_ike(&responder, &ike_offer(&initiator, None), None).unwrap();
        let (accepted, _) = accept_ike(&initiator, &[answer]).unwrap();
        assert_eq!(chosen, accepted);
        assert_eq!(accepted.encr, gcm(256));

        let initiator = [
            esp(gcm(256), None, vec![DhGroup::Curve25519]),
            esp(
                cbc(256),
                Some(IntegAlg::HmacSha256_128),
                vec![DhGroup::Modp2048],
            ),
        ];
        let responder = [esp(
            cbc(256),
            Some(IntegAlg::HmacSha256_128),
            vec![DhGroup::Modp2048],
        )];
        for (with_pfs, group) in [(false, None), (true, Some(DhGroup::Modp2048))] {
            let offer = esp_offer(&initiator, 0x1111_1111, with_pfs);
            let (chosen, peer_spi, answer) =
                select_esp(&responder, &offer, 0x2222_2222, group).unwrap();
            assert_eq!(peer_spi, 0x1111_1111);
            assert_eq!(answer.number, 2);
            let (accepted, responder_spi) = accept_esp(&initiator, &[answer], with_pfs).unwrap();
            assert_eq!(responder_spi, 0x2222_2222);
            assert_eq!(chosen, accepted);
            assert_eq!(accepted.dh, group);
        }
    }

    #[test]
    fn pfs_rules_for_esp() {
        let ours = [esp(
            gcm(256),
            None,
            vec![DhGroup::Ecp256, DhGroup::Curve25519],
        )];
        let offered = esp_offer(
            &[esp(
                gcm(256),
                None,
                vec![DhGroup::Curve25519, DhGroup::Ecp256],
            )],
            7,
            true,
        );
        // The KE's group is the one chosen, wherever it is in the list.
        let (suite, _, answer) = select_esp(&ours, &offered, 9, Some(DhGroup::Ecp256)).unwrap();
        assert_eq!(suite.dh, Some(DhGroup::Ecp256));
        assert_eq!(
            answer
                .transforms
                .iter()
                .filter(|t| t.kind == tt::DH)
                .count(),
            1
        );
        // A group we do not allow, or one the peer did not offer: no proposal.
        assert!(select_esp(&ours, &offered, 9, Some(DhGroup::Modp2048)).is_err());
        let only_x25519 = [esp(gcm(256), None, vec![DhGroup::Curve25519])];
        assert!(select_esp(&only_x25519, &offered, 9, Some(DhGroup::Ecp256)).is_err());
        // Without a KE, a proposal that requires DH is unacceptable...
        assert!(select_esp(&ours, &offered, 9, None).is_err());
        // ...one that allows NONE is fine, and NONE is answered...
        let mut optional = offered.clone();
        optional[0].transforms.push(TransformWire {
            kind: tt::DH,
            id: 0,
            key_len: None,
        });
        let (suite, _, answer) = select_esp(&ours, &optional, 9, None).unwrap();
        assert_eq!(suite.dh, None);
        assert!(answer.transforms.contains(&TransformWire {
            kind: tt::DH,
            id: 0,
            key_len: None
        }));
        // ...and so is one without DH (IKE_AUTH), even though our proposal lists groups.
        let plain = esp_offer(&ours, 7, false);
        assert_eq!(select_esp(&ours, &plain, 9, None).unwrap().0.dh, None);
    }

    #[test]
    fn esn_must_allow_no_esn() {
        let ours = [esp(gcm(256), None, vec![])];
        let mut offered = esp_offer(&ours, 1, false);
        offered[0].transforms.retain(|t| t.kind != tt::ESN);
        offered[0].transforms.push(TransformWire {
            kind: tt::ESN,
            id: 1,
            key_len: None,
        });
        assert!(select_esp(&ours, &offered, 2, None).is_err());
        // No ESN transform at all means NO_ESN.
        offered[0].transforms.retain(|t| t.kind != tt::ESN);
        assert!(select_esp(&ours, &offered, 2, None).is_ok());
    }

    #[test]
    fn initiator_rejects_answers_that_are_not_ours() {
        let ours = [ike_gcm(), ike_cbc()];
        let offer = ike_offer(&ours, None);
        let (_, good) = select_ike(&ours, &offer[1..], None).unwrap();
        assert_eq!(
            accept_ike(&ours, std::slice::from_ref(&good))
                .unwrap()
                .0
                .encr,
            cbc(256)
        );

        let reject = |answer: Vec<ProposalWire>, expected: &str| {
            let err = accept_ike(&ours, &answer).unwrap_err();
            assert!(
                err.to_string().contains(expected),
                "{err} should say {expected}"
            );
        };
        reject(vec![good.clone(), good.clone()], "expected exactly one");
        reject(vec![], "expected exactly one");
        reject(
            vec![good.clone().clone_with_number(3)],
            "no proposal with its number",
        );
        // Proposal 1 is the GCM one: CBC transforms are not in it.
        reject(
            vec![good.clone().clone_with_number(1)],
            "encryption algorithm is not one we offered",
        );
        let mut two_dh = good.clone();
        two_dh.transforms.push(TransformWire {
            kind: tt::DH,
            id: 14,
            key_len: None,
        });
        reject(vec![two_dh], "more than one DH group");
        let mut no_prf = good.clone();
        no_prf.transforms.retain(|t| t.kind != tt::PRF);
        reject(vec![no_prf], "no PRF");
        let mut other_group = good.clone();
        other_group.transforms.retain(|t| t.kind != tt::DH);
        other_group.transforms.push(TransformWire {
            kind: tt::DH,
            id: 19,
            key_len: None,
        });
        reject(vec![other_group], "DH group is not one we offered");
        let mut esp_protocol = good;
        esp_protocol.protocol = protocol::ESP;
        reject(vec![esp_protocol], "another protocol");

        let ours = [esp(gcm(256), None, vec![DhGroup::Ecp256])];
        let offer = esp_offer(&ours, 1, false);
        let (_, _, answer) = select_esp(&ours, &offer, 2, None).unwrap();
        let mut with_dh = answer.clone();
        with_dh.transforms.push(TransformWire {
            kind: tt::DH,
            id: 19,
            key_len: None,
        });
        assert!(accept_esp(&ours, &[with_dh], false).is_err());
        // With PFS offered, the answer must pick one of our groups.
        assert!(accept_esp(&ours, std::slice::from_ref(&answer), true).is_err());
        let mut short_spi = answer;
        short_spi.spi = vec![1, 2];
        assert!(accept_esp(&ours, &[short_spi], false).is_err());
    }
}
