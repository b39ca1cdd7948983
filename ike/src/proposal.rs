//! Proposals as the configuration states them, and the suites negotiation picks from them.
//!
//! A proposal lists acceptable algorithms per transform type; any combination of them is
//! acceptable (RFC 7296 §3.3). A suite is one algorithm per type: what both sides use.
//!
//! Proposals are written as strongSwan users write them: keywords joined by `-`
//! (`aes256gcm16-prfsha256-x25519`, `aes256-sha256-modp2048`). Suites print as
//! `swanctl --list-sas` shows them (`AES_GCM_16-256/PRF_HMAC_SHA2_256/CURVE_25519`), so an
//! operator can compare both ends at a glance.

use std::fmt;

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

/// Why a proposal string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposalError {
    #[error("empty proposal: list algorithms joined by '-', e.g. \"{example}\"")]
    Empty { example: &'static str },
    #[error("empty algorithm name between two '-' in \"{proposal}\"")]
    EmptyKeyword { proposal: String },
    #[error("unknown algorithm \"{keyword}\" (accepted: {accepted})")]
    UnknownKeyword {
        keyword: String,
        accepted: &'static str,
    },
    #[error("\"{keyword}\" does not belong in an {protocol} proposal: {why}")]
    WrongProtocol {
        keyword: String,
        protocol: &'static str,
        why: &'static str,
    },
    #[error("\"{keyword}\" is listed twice")]
    Duplicate { keyword: String },
    #[error("no encryption algorithm (aes128, aes256, aes128gcm16 or aes256gcm16)")]
    NoEncryption,
    #[error(
        "\"{aead}\" (AEAD) and \"{classic}\" cannot be in one proposal: \
         write them as two proposals"
    )]
    MixedAead {
        aead: &'static str,
        classic: &'static str,
    },
    #[error("\"{cipher}\" needs an integrity algorithm (sha256, sha384 or sha512)")]
    MissingIntegrity { cipher: String },
    #[error(
        "\"{integ}\" is an integrity algorithm, which the AEAD cipher \"{cipher}\" does not \
         use{hint}"
    )]
    AeadWithIntegrity {
        integ: &'static str,
        cipher: String,
        hint: &'static str,
    },
    #[error(
        "the AEAD cipher \"{cipher}\" needs a PRF in an IKE proposal (prfsha256, prfsha384 \
         or prfsha512)"
    )]
    MissingPrf { cipher: String },
    #[error("an IKE proposal needs a Diffie-Hellman group (x25519, ecp256, ecp384 or modp2048)")]
    MissingDh,
    #[error(
        "\"esn\" alone cannot be agreed: Siteward uses only 32-bit sequence numbers (its \
         CHILD_SAs rekey long before 2^32 packets); write \"noesn\" or leave it out"
    )]
    EsnOnly,
}

const IKE_KEYWORDS: &str = "aes128, aes256, aes128gcm16, aes256gcm16 (or aes128gcm128, \
     aes256gcm128), sha256, sha384, sha512, prfsha256, prfsha384, prfsha512, x25519 (or \
     curve25519), ecp256, ecp384, modp2048";
const ESP_KEYWORDS: &str = "aes128, aes256, aes128gcm16, aes256gcm16 (or aes128gcm128, \
     aes256gcm128), sha256, sha384, sha512, x25519 (or curve25519), ecp256, ecp384, \
     modp2048, noesn, esn";

/// One keyword of a proposal string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keyword {
    Encr(EncrAlg),
    Integ(IntegAlg),
    Prf(PrfAlg),
    Dh(DhGroup),
    /// `esn` (true) or `noesn` (false).
    Esn(bool),
}

impl Keyword {
    fn lookup(word: &str) -> Option<Keyword> {
        let aes_cbc = |key_bits| Keyword::Encr(EncrAlg::AesCbc { key_bits });
        let aes_gcm = |key_bits| Keyword::Encr(EncrAlg::AesGcm16 { key_bits });
        Some(match word {
            "aes128" => aes_cbc(128),
            "aes256" => aes_cbc(256),
            // strongSwan names the ICV length in bytes or in bits; both mean 16 bytes.
            "aes128gcm16" | "aes128gcm128" => aes_gcm(128),
            "aes256gcm16" | "aes256gcm128" => aes_gcm(256),
            "sha256" => Keyword::Integ(IntegAlg::HmacSha256_128),
            "sha384" => Keyword::Integ(IntegAlg::HmacSha384_192),
            "sha512" => Keyword::Integ(IntegAlg::HmacSha512_256),
            "prfsha256" => Keyword::Prf(PrfAlg::HmacSha256),
            "prfsha384" => Keyword::Prf(PrfAlg::HmacSha384),
            "prfsha512" => Keyword::Prf(PrfAlg::HmacSha512),
            "x25519" | "curve25519" => Keyword::Dh(DhGroup::Curve25519),
            "ecp256" => Keyword::Dh(DhGroup::Ecp256),
            "ecp384" => Keyword::Dh(DhGroup::Ecp384),
            "modp2048" => Keyword::Dh(DhGroup::Modp2048),
            "esn" => Keyword::Esn(true),
            "noesn" => Keyword::Esn(false),
            _ => return None,
        })
    }
}

/// A proposal string split into its transform types, each in the order written.
#[derive(Default)]
struct Keywords {
    encr: Vec<EncrAlg>,
    integ: Vec<IntegAlg>,
    prf: Vec<PrfAlg>,
    dh: Vec<DhGroup>,
    esn: Vec<bool>,
}

impl Keywords {
    fn split(
        text: &str,
        example: &'static str,
        accepted: &'static str,
    ) -> Result<Self, ProposalError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(ProposalError::Empty { example });
        }
        let mut seen = Vec::new();
        let mut keywords = Keywords::default();
        for word in text.split('-') {
            let word = word.trim().to_ascii_lowercase();
            if word.is_empty() {
                return Err(ProposalError::EmptyKeyword {
                    proposal: text.to_string(),
                });
            }
            let keyword = Keyword::lookup(&word).ok_or_else(|| ProposalError::UnknownKeyword {
                keyword: word.clone(),
                accepted,
            })?;
            // Aliases count as the same algorithm.
            if seen.contains(&keyword) {
                return Err(ProposalError::Duplicate { keyword: word });
            }
            seen.push(keyword);
            match keyword {
                Keyword::Encr(alg) => keywords.encr.push(alg),
                Keyword::Integ(alg) => keywords.integ.push(alg),
                Keyword::Prf(alg) => keywords.prf.push(alg),
                Keyword::Dh(group) => keywords.dh.push(group),
                Keyword::Esn(esn) => keywords.esn.push(esn),
            }
        }
        Ok(keywords)
    }

    /// The ciphers, all AEAD or all classic; `true` when AEAD.
    fn check_ciphers(&self) -> Result<bool, ProposalError> {
        let aead = self.encr.iter().find(|alg| alg.is_aead());
        let classic = self.encr.iter().find(|alg| !alg.is_aead());
        match (aead, classic) {
            (None, None) => Err(ProposalError::NoEncryption),
            (Some(&aead), Some(&classic)) => Err(ProposalError::MixedAead {
                aead: encr_keyword(aead),
                classic: encr_keyword(classic),
            }),
            (aead, _) => Ok(aead.is_some()),
        }
    }

    fn first_cipher(&self) -> String {
        self.encr.first().map(|alg| alg.name()).unwrap_or_default()
    }
}

/// The keyword of a cipher as `'static`, for error values.
fn encr_keyword(alg: EncrAlg) -> &'static str {
    match alg {
        EncrAlg::AesCbc { key_bits: 128 } => "aes128",
        EncrAlg::AesCbc { .. } => "aes256",
        EncrAlg::AesGcm16 { key_bits: 128 } => "aes128gcm16",
        EncrAlg::AesGcm16 { .. } => "aes256gcm16",
    }
}

/// The PRF an integrity keyword stands for in an IKE proposal without a `prf` keyword.
fn prf_of(integ: IntegAlg) -> PrfAlg {
    match integ {
        IntegAlg::HmacSha256_128 => PrfAlg::HmacSha256,
        IntegAlg::HmacSha384_192 => PrfAlg::HmacSha384,
        IntegAlg::HmacSha512_256 => PrfAlg::HmacSha512,
    }
}

impl IkeProposal {
    /// Parses strongSwan's IKE proposal syntax. As in strongSwan, an integrity keyword also
    /// gives the PRF when no `prf` keyword is written, and with an AEAD cipher (which needs no
    /// integrity algorithm) it gives only the PRF: `aes256gcm16-sha256-x25519` is
    /// `aes256gcm16-prfsha256-x25519`.
    pub fn parse(text: &str) -> Result<IkeProposal, ProposalError> {
        let words = Keywords::split(text, "aes256gcm16-prfsha256-x25519", IKE_KEYWORDS)?;
        if let Some(&esn) = words.esn.first() {
            return Err(ProposalError::WrongProtocol {
                keyword: if esn { "esn" } else { "noesn" }.to_string(),
                protocol: "IKE",
                why: "sequence numbers are an ESP setting (esp_proposals)",
            });
        }
        let aead = words.check_ciphers()?;
        match (aead, words.integ.first()) {
            (false, None) => {
                return Err(ProposalError::MissingIntegrity {
                    cipher: words.first_cipher(),
                })
            }
            // With a prf keyword, an integrity keyword cannot stand for the PRF.
            (true, Some(&integ)) if !words.prf.is_empty() => {
                return Err(ProposalError::AeadWithIntegrity {
                    integ: integ.name(),
                    cipher: words.first_cipher(),
                    hint: "; the PRF is given by the prf keyword, remove it",
                })
            }
            _ => {}
        }
        if words.prf.is_empty() && words.integ.is_empty() {
            return Err(ProposalError::MissingPrf {
                cipher: words.first_cipher(),
            });
        }
        let prf = if words.prf.is_empty() {
            words.integ.iter().copied().map(prf_of).collect()
        } else {
            words.prf
        };
        if words.dh.is_empty() {
            return Err(ProposalError::MissingDh);
        }
        Ok(IkeProposal {
            integ: if aead { Vec::new() } else { words.integ },
            encr: words.encr,
            prf,
            dh: words.dh,
        })
    }
}

impl EspProposal {
    /// Parses strongSwan's ESP proposal syntax: ciphers, integrity algorithms (not with an
    /// AEAD cipher), optional PFS groups, and `noesn` (`esn` only beside it: Siteward does
    /// not do extended sequence numbers).
    pub fn parse(text: &str) -> Result<EspProposal, ProposalError> {
        let words = Keywords::split(text, "aes256gcm16", ESP_KEYWORDS)?;
        if let Some(&prf) = words.prf.first() {
            return Err(ProposalError::WrongProtocol {
                keyword: prf.name().to_string(),
                protocol: "ESP",
                why: "ESP has no PRF; its keys come from the IKE SA's (proposals)",
            });
        }
        if words.esn.contains(&true) && !words.esn.contains(&false) {
            return Err(ProposalError::EsnOnly);
        }
        let aead = words.check_ciphers()?;
        match (aead, words.integ.first()) {
            (false, None) => {
                return Err(ProposalError::MissingIntegrity {
                    cipher: words.first_cipher(),
                })
            }
            (true, Some(&integ)) => {
                return Err(ProposalError::AeadWithIntegrity {
                    integ: integ.name(),
                    cipher: words.first_cipher(),
                    hint: "; remove it",
                })
            }
            _ => {}
        }
        Ok(EspProposal {
            encr: words.encr,
            integ: words.integ,
            dh: words.dh,
        })
    }
}

/// Writes keywords joined by `-`.
fn write_keywords<'a>(
    f: &mut fmt::Formatter<'_>,
    words: impl IntoIterator<Item = std::borrow::Cow<'a, str>>,
) -> fmt::Result {
    for (i, word) in words.into_iter().enumerate() {
        if i > 0 {
            f.write_str("-")?;
        }
        f.write_str(&word)?;
    }
    Ok(())
}

/// strongSwan's keyword form, which [`IkeProposal::parse`] reads back. The PRF is left out
/// when the integrity algorithms imply it, as one writes it (`aes256-sha256-modp2048`).
impl fmt::Display for IkeProposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let implied: Vec<PrfAlg> = self.integ.iter().copied().map(prf_of).collect();
        let prf = if !self.integ.is_empty() && implied == self.prf {
            &[][..]
        } else {
            &self.prf[..]
        };
        write_keywords(
            f,
            self.encr
                .iter()
                .map(|alg| alg.name().into())
                .chain(self.integ.iter().map(|alg| alg.name().into()))
                .chain(prf.iter().map(|alg| alg.name().into()))
                .chain(self.dh.iter().map(|group| group.name().into())),
        )
    }
}

/// strongSwan's keyword form, which [`EspProposal::parse`] reads back.
impl fmt::Display for EspProposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_keywords(
            f,
            self.encr
                .iter()
                .map(|alg| alg.name().into())
                .chain(self.integ.iter().map(|alg| alg.name().into()))
                .chain(self.dh.iter().map(|group| group.name().into())),
        )
    }
}

/// IANA-style names as strongSwan prints them (`AES_GCM_16-256`).
fn write_encr(f: &mut fmt::Formatter<'_>, alg: EncrAlg) -> fmt::Result {
    let name = match alg {
        EncrAlg::AesCbc { .. } => "AES_CBC",
        EncrAlg::AesGcm16 { .. } => "AES_GCM_16",
    };
    write!(f, "{name}-{}", alg.key_bits())
}

fn integ_name(alg: IntegAlg) -> &'static str {
    match alg {
        IntegAlg::HmacSha256_128 => "HMAC_SHA2_256_128",
        IntegAlg::HmacSha384_192 => "HMAC_SHA2_384_192",
        IntegAlg::HmacSha512_256 => "HMAC_SHA2_512_256",
    }
}

fn prf_name(alg: PrfAlg) -> &'static str {
    match alg {
        PrfAlg::HmacSha256 => "PRF_HMAC_SHA2_256",
        PrfAlg::HmacSha384 => "PRF_HMAC_SHA2_384",
        PrfAlg::HmacSha512 => "PRF_HMAC_SHA2_512",
    }
}

fn dh_name(group: DhGroup) -> &'static str {
    match group {
        DhGroup::Modp2048 => "MODP_2048",
        DhGroup::Ecp256 => "ECP_256",
        DhGroup::Ecp384 => "ECP_384",
        DhGroup::Curve25519 => "CURVE_25519",
    }
}

/// As `swanctl --list-sas` prints an IKE SA: `AES_CBC-256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_2048`.
impl fmt::Display for IkeSuite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_encr(f, self.encr)?;
        if let Some(integ) = self.integ {
            write!(f, "/{}", integ_name(integ))?;
        }
        write!(f, "/{}/{}", prf_name(self.prf), dh_name(self.dh))
    }
}

/// As `swanctl --list-sas` prints a CHILD_SA: `AES_GCM_16-256`, `AES_CBC-256/HMAC_SHA2_256_128/ECP_256`.
impl fmt::Display for EspSuite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_encr(f, self.encr)?;
        if let Some(integ) = self.integ {
            write!(f, "/{}", integ_name(integ))?;
        }
        if let Some(dh) = self.dh {
            write!(f, "/{}", dh_name(dh))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GCM256: EncrAlg = EncrAlg::AesGcm16 { key_bits: 256 };
    const GCM128: EncrAlg = EncrAlg::AesGcm16 { key_bits: 128 };
    const CBC256: EncrAlg = EncrAlg::AesCbc { key_bits: 256 };
    const CBC128: EncrAlg = EncrAlg::AesCbc { key_bits: 128 };

    fn ike(text: &str) -> IkeProposal {
        IkeProposal::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn esp(text: &str) -> EspProposal {
        EspProposal::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn the_default_proposals_parse() {
        assert_eq!(
            ike("aes256gcm16-prfsha256-x25519"),
            IkeProposal {
                encr: vec![GCM256],
                integ: vec![],
                prf: vec![PrfAlg::HmacSha256],
                dh: vec![DhGroup::Curve25519],
            }
        );
        assert_eq!(
            ike("aes256-sha256-modp2048"),
            IkeProposal {
                encr: vec![CBC256],
                integ: vec![IntegAlg::HmacSha256_128],
                prf: vec![PrfAlg::HmacSha256],
                dh: vec![DhGroup::Modp2048],
            }
        );
        assert_eq!(
            esp("aes256gcm16"),
            EspProposal {
                encr: vec![GCM256],
                integ: vec![],
                dh: vec![],
            }
        );
        assert_eq!(
            esp("aes256-sha256"),
            EspProposal {
                encr: vec![CBC256],
                integ: vec![IntegAlg::HmacSha256_128],
                dh: vec![],
            }
        );
    }

    #[test]
    fn integrity_keywords_imply_the_prf_unless_one_is_written() {
        let implied = ike("aes128-aes256-sha512-sha256-ecp256-ecp384");
        assert_eq!(implied.encr, [CBC128, CBC256]);
        assert_eq!(
            implied.integ,
            [IntegAlg::HmacSha512_256, IntegAlg::HmacSha256_128]
        );
        assert_eq!(implied.prf, [PrfAlg::HmacSha512, PrfAlg::HmacSha256]);
        assert_eq!(implied.dh, [DhGroup::Ecp256, DhGroup::Ecp384]);

        let explicit = ike("aes256-sha256-prfsha384-modp2048");
        assert_eq!(explicit.integ, [IntegAlg::HmacSha256_128]);
        assert_eq!(explicit.prf, [PrfAlg::HmacSha384]);
    }

    #[test]
    fn with_aead_an_integrity_keyword_is_the_prf() {
        let written = ike("aes256gcm16-sha384-x25519");
        assert_eq!(written, ike("aes256gcm16-prfsha384-x25519"));
        assert!(written.integ.is_empty());
    }

    #[test]
    fn aliases_and_case_are_accepted() {
        assert_eq!(
            ike("aes256gcm128-prfsha256-curve25519"),
            ike("aes256gcm16-prfsha256-x25519")
        );
        assert_eq!(
            ike("AES128GCM16-PRFSHA512-ECP384"),
            IkeProposal {
                encr: vec![GCM128],
                integ: vec![],
                prf: vec![PrfAlg::HmacSha512],
                dh: vec![DhGroup::Ecp384],
            }
        );
        assert_eq!(esp("aes128gcm128"), esp("aes128gcm16"));
    }

    #[test]
    fn esp_takes_pfs_groups_and_noesn() {
        let proposal = esp("aes256gcm16-ecp256-modp2048-noesn");
        assert_eq!(proposal.dh, [DhGroup::Ecp256, DhGroup::Modp2048]);
        // Both offered: the 32-bit one is what Siteward agrees to.
        assert_eq!(esp("aes256-sha256-esn-noesn"), esp("aes256-sha256"));
    }

    #[test]
    fn esn_alone_is_refused_with_the_reason() {
        let err = EspProposal::parse("aes256gcm16-esn").unwrap_err();
        assert_eq!(err, ProposalError::EsnOnly);
        assert!(err.to_string().contains("32-bit sequence numbers"), "{err}");
    }

    #[test]
    fn an_unknown_keyword_is_named_with_what_is_accepted() {
        for (text, word) in [
            ("aes192-sha256-modp2048", "aes192"),
            ("aes256gcm16-prfsha256-modp1024", "modp1024"),
            ("aes256-sha1-x25519", "sha1"),
        ] {
            let err = IkeProposal::parse(text).unwrap_err();
            assert_eq!(
                err,
                ProposalError::UnknownKeyword {
                    keyword: word.to_string(),
                    accepted: IKE_KEYWORDS
                }
            );
            let message = err.to_string();
            assert!(message.contains(&format!("\"{word}\"")), "{message}");
            assert!(message.contains("aes256gcm16"), "{message}");
            assert!(message.contains("prfsha384"), "{message}");
        }
        let err = EspProposal::parse("aes256gcm16-3des").unwrap_err();
        assert!(err.to_string().contains("noesn"), "{err}");
    }

    #[test]
    fn keywords_of_the_other_protocol_are_refused() {
        assert!(matches!(
            EspProposal::parse("aes256gcm16-prfsha256"),
            Err(ProposalError::WrongProtocol { protocol: "ESP", ref keyword, .. }) if keyword == "prfsha256"
        ));
        assert!(matches!(
            IkeProposal::parse("aes256gcm16-prfsha256-x25519-noesn"),
            Err(ProposalError::WrongProtocol { protocol: "IKE", ref keyword, .. }) if keyword == "noesn"
        ));
    }

    #[test]
    fn aead_and_classic_ciphers_do_not_mix() {
        for text in [
            "aes256gcm16-aes256-sha256-x25519",
            "aes256-aes128gcm16-sha256-x25519",
        ] {
            let err = IkeProposal::parse(text).unwrap_err();
            assert!(
                matches!(err, ProposalError::MixedAead { .. }),
                "{text}: {err}"
            );
            assert!(err.to_string().contains("two proposals"), "{err}");
        }
        assert!(matches!(
            EspProposal::parse("aes128gcm16-aes128-sha256"),
            Err(ProposalError::MixedAead {
                aead: "aes128gcm16",
                classic: "aes128"
            })
        ));
    }

    #[test]
    fn a_classic_cipher_needs_integrity() {
        assert_eq!(
            IkeProposal::parse("aes256-prfsha256-x25519"),
            Err(ProposalError::MissingIntegrity {
                cipher: "aes256".into()
            })
        );
        assert_eq!(
            EspProposal::parse("aes128"),
            Err(ProposalError::MissingIntegrity {
                cipher: "aes128".into()
            })
        );
    }

    #[test]
    fn aead_with_integrity_is_refused() {
        let err = EspProposal::parse("aes256gcm16-sha256").unwrap_err();
        assert!(matches!(
            err,
            ProposalError::AeadWithIntegrity {
                integ: "sha256",
                ..
            }
        ));
        assert!(err.to_string().contains("aes256gcm16"), "{err}");
        // In IKE, sha256 beside an explicit PRF can stand for nothing.
        assert!(matches!(
            IkeProposal::parse("aes256gcm16-sha256-prfsha384-x25519"),
            Err(ProposalError::AeadWithIntegrity {
                integ: "sha256",
                ..
            })
        ));
    }

    #[test]
    fn ike_needs_a_prf_and_a_group() {
        assert_eq!(
            IkeProposal::parse("aes256gcm16-x25519"),
            Err(ProposalError::MissingPrf {
                cipher: "aes256gcm16".into()
            })
        );
        assert_eq!(
            IkeProposal::parse("aes256gcm16-prfsha256"),
            Err(ProposalError::MissingDh)
        );
        assert_eq!(
            IkeProposal::parse("sha256-prfsha256-x25519"),
            Err(ProposalError::NoEncryption)
        );
    }

    #[test]
    fn malformed_strings_are_refused() {
        assert!(matches!(
            IkeProposal::parse("  "),
            Err(ProposalError::Empty { .. })
        ));
        assert!(matches!(
            EspProposal::parse("aes256--sha256"),
            Err(ProposalError::EmptyKeyword { .. })
        ));
        assert!(matches!(
            EspProposal::parse("aes256gcm16-"),
            Err(ProposalError::EmptyKeyword { .. })
        ));
        // An alias of an algorithm already listed is a duplicate too.
        assert_eq!(
            IkeProposal::parse("aes256gcm16-prfsha256-x25519-curve25519"),
            Err(ProposalError::Duplicate {
                keyword: "curve25519".into()
            })
        );
    }

    #[test]
    fn display_is_the_keyword_form() {
        for text in [
            "aes256gcm16-prfsha256-x25519",
            "aes256-sha256-modp2048",
            "aes128-aes256-sha256-sha384-prfsha512-ecp256-ecp384",
            "aes128gcm16-aes256gcm16-prfsha384-prfsha256-modp2048-x25519",
        ] {
            assert_eq!(ike(text).to_string(), text);
        }
        assert_eq!(
            ike("aes256gcm128-sha256-curve25519").to_string(),
            "aes256gcm16-prfsha256-x25519"
        );
        for text in ["aes256gcm16", "aes256-sha256", "aes128gcm16-ecp384-x25519"] {
            assert_eq!(esp(text).to_string(), text);
        }
        assert_eq!(esp("aes256-sha512-noesn").to_string(), "aes256-sha512");
    }

    #[test]
    fn suites_print_as_swanctl_lists_them() {
        let gcm = IkeSuite {
            encr: GCM256,
            integ: None,
            prf: PrfAlg::HmacSha256,
            dh: DhGroup::Curve25519,
        };
        assert_eq!(
            gcm.to_string(),
            "AES_GCM_16-256/PRF_HMAC_SHA2_256/CURVE_25519"
        );
        let cbc = IkeSuite {
            encr: CBC256,
            integ: Some(IntegAlg::HmacSha256_128),
            prf: PrfAlg::HmacSha384,
            dh: DhGroup::Modp2048,
        };
        assert_eq!(
            cbc.to_string(),
            "AES_CBC-256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_384/MODP_2048"
        );
        let child = EspSuite {
            encr: GCM128,
            integ: None,
            dh: None,
        };
        assert_eq!(child.to_string(), "AES_GCM_16-128");
        let child = EspSuite {
            encr: CBC128,
            integ: Some(IntegAlg::HmacSha512_256),
            dh: Some(DhGroup::Ecp384),
        };
        assert_eq!(child.to_string(), "AES_CBC-128/HMAC_SHA2_512_256/ECP_384");
    }

    /// Some of `all` (at least `min`), in any order.
    fn some_of<T: Clone + std::fmt::Debug + 'static>(
        all: Vec<T>,
        min: usize,
    ) -> impl Strategy<Value = Vec<T>> {
        let max = all.len();
        prop::sample::subsequence(all, min..=max).prop_shuffle()
    }

    fn integs() -> Vec<IntegAlg> {
        vec![
            IntegAlg::HmacSha256_128,
            IntegAlg::HmacSha384_192,
            IntegAlg::HmacSha512_256,
        ]
    }

    fn groups() -> Vec<DhGroup> {
        vec![
            DhGroup::Modp2048,
            DhGroup::Ecp256,
            DhGroup::Ecp384,
            DhGroup::Curve25519,
        ]
    }

    fn ciphers() -> impl Strategy<Value = (bool, Vec<EncrAlg>)> {
        prop_oneof![
            some_of(vec![GCM128, GCM256], 1).prop_map(|encr| (true, encr)),
            some_of(vec![CBC128, CBC256], 1).prop_map(|encr| (false, encr)),
        ]
    }

    fn ike_proposal() -> impl Strategy<Value = IkeProposal> {
        let prfs = vec![PrfAlg::HmacSha256, PrfAlg::HmacSha384, PrfAlg::HmacSha512];
        (
            ciphers(),
            some_of(integs(), 1),
            some_of(prfs, 1),
            some_of(groups(), 1),
        )
            .prop_map(|((aead, encr), integ, prf, dh)| IkeProposal {
                encr,
                integ: if aead { Vec::new() } else { integ },
                prf,
                dh,
            })
    }

    fn esp_proposal() -> impl Strategy<Value = EspProposal> {
        (ciphers(), some_of(integs(), 1), some_of(groups(), 0)).prop_map(
            |((aead, encr), integ, dh)| EspProposal {
                encr,
                integ: if aead { Vec::new() } else { integ },
                dh,
            },
        )
    }

    proptest! {
        #[test]
        fn ike_proposals_round_trip_through_display(proposal in ike_proposal()) {
            prop_assert_eq!(IkeProposal::parse(&proposal.to_string()), Ok(proposal));
        }

        #[test]
        fn esp_proposals_round_trip_through_display(proposal in esp_proposal()) {
            prop_assert_eq!(EspProposal::parse(&proposal.to_string()), Ok(proposal));
        }

        #[test]
        fn parsing_never_panics(text in "[a-z0-9 -]{0,40}") {
            let _ = IkeProposal::parse(&text);
            let _ = EspProposal::parse(&text);
        }
    }
}
