//! X.509 for IKE: the configured CA certificates, chain validation of the peer's
//! certificate (rustls-webpki), what the certificate says about its holder (subject,
//! subjectAltNames, public key) and CERTREQ data.

use std::net::IpAddr;
use std::ops::Range;
use std::time::{SystemTime, UNIX_EPOCH};

use ring::digest;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use webpki::{EndEntityCert, ExtendedKeyUsageValidator, KeyPurposeIdIter};
use x509_parser::asn1_rs::Tag;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate, X509Name};
use x509_parser::public_key::PublicKey;

use super::CryptoError;
use crate::identity::{dn_attribute_name, DnAttribute, Identity};

/// The CA certificates a peer's certificate must chain to.
pub struct TrustAnchors {
    anchors: Vec<TrustAnchor<'static>>,
    /// SHA-1 of each anchor's SubjectPublicKeyInfo, for CERTREQ.
    spki_sha1: Vec<[u8; 20]>,
}

impl TrustAnchors {
    /// One or more CA certificates.
    pub fn from_pem(pem: &[u8]) -> Result<TrustAnchors, CryptoError> {
        let mut anchors = Vec::new();
        let mut spki_sha1 = Vec::new();
        for (index, parsed) in parse_pem(pem, "CA certificate", "the CA file")?
            .into_iter()
            .enumerate()
        {
            let der = CertificateDer::from(parsed.der());
            let anchor = webpki::anchor_from_trusted_cert(&der).map_err(|e| {
                CryptoError::Certificate(format!("CA certificate {}: {e}", index + 1))
            })?;
            anchors.push(anchor.to_owned());
            spki_sha1.push(parsed.spki_sha1());
        }
        Ok(TrustAnchors { anchors, spki_sha1 })
    }

    /// Chain validation (rustls-webpki: signature chain to an anchor, validity at `now`, basic
    /// constraints; do not require any EKU). Returns the parsed end-entity.
    pub fn verify(
        &self,
        end_entity_der: &[u8],
        intermediates: &[Vec<u8>],
        now: SystemTime,
    ) -> Result<PeerCert, CryptoError> {
        let chain_error = |e: webpki::Error| {
            let why = match &e {
                webpki::Error::UnknownIssuer => {
                    "no CA of ca_file issued it (directly or through the intermediates sent)"
                }
                webpki::Error::CertExpired { .. } => "it has expired",
                webpki::Error::CertNotValidYet { .. } => "it is not valid yet",
                webpki::Error::InvalidSignatureForPublicKey => {
                    "a signature in its chain does not verify"
                }
                _ => "its chain does not validate",
            };
            CryptoError::Certificate(format!(
                "the peer's certificate is not trusted: {why} ({e:?})"
            ))
        };
        let end_entity_der_ref = CertificateDer::from(end_entity_der);
        let end_entity = EndEntityCert::try_from(&end_entity_der_ref).map_err(chain_error)?;
        let intermediates: Vec<CertificateDer<'_>> = intermediates
            .iter()
            .map(|der| CertificateDer::from(der.as_slice()))
            .collect();
        let since_epoch = now.duration_since(UNIX_EPOCH).map_err(|_| {
            CryptoError::Certificate("the clock is before 1970: cannot check validity".into())
        })?;
        end_entity
            .verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                &self.anchors,
                &intermediates,
                UnixTime::since_unix_epoch(since_epoch),
                AnyExtendedKeyUsage,
                None,
                None,
            )
            .map_err(chain_error)?;
        PeerCert::from_der(end_entity_der.to_vec())
    }

    /// CERTREQ data (encoding 4, X.509 signature): SHA-1 of each anchor's SubjectPublicKeyInfo, concatenated.
    pub fn certreq_data(&self) -> Vec<u8> {
        self.spki_sha1.concat()
    }
}

impl std::fmt::Debug for TrustAnchors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TrustAnchors({} CA certificates)", self.anchors.len())
    }
}

/// IKE peers use certificates made for TLS servers, for IPsec, or with no EKU at all
/// (strongSwan does not check it either), so any extended key usage is accepted.
struct AnyExtendedKeyUsage;

impl ExtendedKeyUsageValidator for AnyExtendedKeyUsage {
    fn validate(&self, iter: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        // Still reject a malformed extension.
        for purpose in iter {
            purpose?;
        }
        Ok(())
    }
}

/// A parsed certificate: the peer's, or our own.
pub struct PeerCert {
    der: Vec<u8>,
    /// Where the subject Name's DER sits in `der`.
    subject: Range<usize>,
    spki: Range<usize>,
    subject_dn: Vec<DnAttribute>,
    alt_names: Vec<AltName>,
    key: CertKey,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum AltName {
    Dns(String),
    Ip(IpAddr),
    Email(String),
}

/// The certificate's public key, as signature checks and key matching need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CertKey {
    /// Modulus and exponent, big-endian without leading zeros.
    Rsa { modulus: Vec<u8>, exponent: Vec<u8> },
    /// The uncompressed point (0x04 | x | y).
    Ec { curve: EcCurve, point: Vec<u8> },
    /// A key type Siteward cannot use, by algorithm OID (and curve OID for EC).
    Other(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EcCurve {
    P256,
    P384,
}

const OID_RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";

impl PeerCert {
    pub fn from_der(der: Vec<u8>) -> Result<PeerCert, CryptoError> {
        let invalid = |e: String| CryptoError::Certificate(format!("cannot parse: {e}"));
        let (rest, cert) = X509Certificate::from_der(&der).map_err(|e| invalid(e.to_string()))?;
        if !rest.is_empty() {
            return Err(invalid(format!(
                "{} bytes after the certificate",
                rest.len()
            )));
        }
        let subject = range_within(&der, cert.subject().as_raw());
        let spki = range_within(&der, cert.public_key().raw);
        let subject_dn = dn_attributes(cert.subject());
        let alt_names = match cert.subject_alternative_name() {
            Ok(Some(extension)) => alt_names(&extension.value.general_names),
            Ok(None) => Vec::new(),
            Err(e) => return Err(invalid(format!("subjectAltName: {e}"))),
        };
        let key = cert_key(&cert);
        drop(cert);
        Ok(PeerCert {
            der,
            subject,
            spki,
            subject_dn,
            alt_names,
            key,
        })
    }

    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// What we send as ID_DER_ASN1_DN.
    pub fn subject_der(&self) -> &[u8] {
        &self.der[self.subject.clone()]
    }

    /// The subject as `C=CH, O=Example, CN=gw1` for logs and status.
    pub fn subject_text(&self) -> String {
        self.subject_dn
            .iter()
            .map(|(attr, value)| format!("{attr}={value}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// True if `id` is the subject DN, or a subjectAltName (dNSName vs Fqdn case-insensitive,
    /// iPAddress vs Ipv4/Ipv6, rfc822Name vs Email).
    pub fn matches(&self, id: &Identity) -> bool {
        match id {
            Identity::Dn(attributes) => dn_equal(attributes, &self.subject_dn),
            Identity::Fqdn(name) => self
                .alt_names
                .iter()
                .any(|alt| matches!(alt, AltName::Dns(dns) if dns.eq_ignore_ascii_case(name))),
            // strongSwan compares RFC 822 identities case-insensitively as well.
            Identity::Email(address) => self.alt_names.iter().any(
                |alt| matches!(alt, AltName::Email(email) if email.eq_ignore_ascii_case(address)),
            ),
            Identity::Ipv4(address) => self.has_ip(IpAddr::V4(*address)),
            Identity::Ipv6(address) => self.has_ip(IpAddr::V6(*address)),
            Identity::KeyId(_) => false,
        }
    }

    fn has_ip(&self, address: IpAddr) -> bool {
        self.alt_names.contains(&AltName::Ip(address))
    }

    pub(crate) fn key(&self) -> &CertKey {
        &self.key
    }

    fn spki_sha1(&self) -> [u8; 20] {
        let hash = digest::digest(
            &digest::SHA1_FOR_LEGACY_USE_ONLY,
            &self.der[self.spki.clone()],
        );
        let mut out = [0u8; 20];
        out.copy_from_slice(hash.as_ref());
        out
    }
}

impl std::fmt::Debug for PeerCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PeerCert({})", self.subject_text())
    }
}

/// Our own certificate chain from a PEM file's contents: end-entity first, then
/// intermediates; never empty.
pub fn certs_from_pem(pem: &[u8]) -> Result<Vec<PeerCert>, CryptoError> {
    parse_pem(pem, "certificate", "the certificate file")
}

/// Every CERTIFICATE block of `pem`, parsed; errors name the `what` (numbered from 1) or
/// the empty `file`.
fn parse_pem(pem: &[u8], what: &str, file: &str) -> Result<Vec<PeerCert>, CryptoError> {
    let mut certs = Vec::new();
    for (index, der) in CertificateDer::pem_slice_iter(pem).enumerate() {
        let fail = |e: String| CryptoError::Certificate(format!("{what} {}: {e}", index + 1));
        let der = der.map_err(|e| fail(e.to_string()))?;
        certs.push(PeerCert::from_der(der.to_vec()).map_err(|e| fail(e.to_string()))?);
    }
    if certs.is_empty() {
        return Err(CryptoError::Certificate(format!(
            "no CERTIFICATE block in {file}"
        )));
    }
    Ok(certs)
}

/// The position of `part`, a subslice x509-parser returned, inside `whole`.
fn range_within(whole: &[u8], part: &[u8]) -> Range<usize> {
    let start = (part.as_ptr() as usize).saturating_sub(whole.as_ptr() as usize);
    start..start + part.len()
}

fn cert_key(cert: &X509Certificate<'_>) -> CertKey {
    let spki = cert.public_key();
    let algorithm = spki.algorithm.algorithm.to_id_string();
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) if algorithm == OID_RSA_ENCRYPTION => CertKey::Rsa {
            modulus: strip_leading_zeros(rsa.modulus).to_vec(),
            exponent: strip_leading_zeros(rsa.exponent).to_vec(),
        },
        Ok(PublicKey::EC(point)) if algorithm == OID_EC_PUBLIC_KEY => {
            let curve_oid = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|parameters| parameters.as_oid().ok())
                .map(|oid| oid.to_id_string())
                .unwrap_or_default();
            let curve = match curve_oid.as_str() {
                OID_P256 => EcCurve::P256,
                OID_P384 => EcCurve::P384,
                _ => return CertKey::Other(format!("{algorithm} on curve {curve_oid}")),
            };
            CertKey::Ec {
                curve,
                point: point.data().to_vec(),
            }
        }
        _ => CertKey::Other(algorithm),
    }
}

pub(crate) fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes
        .iter()
        .position(|&byte| byte != 0)
        .unwrap_or(bytes.len());
    &bytes[first..]
}

fn alt_names(names: &[GeneralName<'_>]) -> Vec<AltName> {
    names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some(AltName::Dns(dns.to_string())),
            GeneralName::RFC822Name(email) => Some(AltName::Email(email.to_string())),
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                _ => None,
            }
            .map(AltName::Ip),
            _ => None,
        })
        .collect()
}

/// The subject as the `(attribute, value)` list `Identity::Dn` holds. Attribute names come
/// from `identity` (one table for both); values are decoded here because a certificate's
/// subject may hold values an ID payload may not (shown as `#hex`, RFC 4514).
fn dn_attributes(name: &X509Name<'_>) -> Vec<DnAttribute> {
    name.iter_rdn()
        .flat_map(|rdn| rdn.iter())
        .map(|attribute| {
            let oid = attribute.attr_type().to_id_string();
            let value = attribute_text(attribute.attr_value().tag(), attribute.as_slice());
            (dn_attribute_name(&oid), value)
        })
        .collect()
}

/// A directory string as text. Types without a text form come out as `#` and the hex of
/// their content, as RFC 4514 writes them.
fn attribute_text(tag: Tag, content: &[u8]) -> String {
    let utf16 = |bytes: &[u8]| {
        let units: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
            .collect();
        String::from_utf16(&units).ok()
    };
    let utf32 = |bytes: &[u8]| {
        bytes
            .chunks_exact(4)
            .map(|quad| char::from_u32(u32::from_be_bytes([quad[0], quad[1], quad[2], quad[3]])))
            .collect::<Option<String>>()
    };
    let text = match tag {
        Tag::Utf8String
        | Tag::PrintableString
        | Tag::Ia5String
        | Tag::NumericString
        | Tag::VisibleString => std::str::from_utf8(content).ok().map(str::to_string),
        // T.61 in practice carries Latin-1.
        Tag::TeletexString => Some(content.iter().map(|&byte| char::from(byte)).collect()),
        Tag::BmpString if content.len().is_multiple_of(2) => utf16(content),
        Tag::UniversalString if content.len().is_multiple_of(4) => utf32(content),
        _ => None,
    };
    text.unwrap_or_else(|| format!("#{}", hex::encode(content)))
}

/// Same attributes in the same order; attribute names case-insensitive, values exact.
fn dn_equal(a: &[DnAttribute], b: &[DnAttribute]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((attr_a, value_a), (attr_b, value_b))| {
                attr_a.eq_ignore_ascii_case(attr_b) && value_a == value_b
            })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
        IsCa, Issuer, KeyPair, SanType, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384,
    };
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::Duration;

    /// A CA made with rcgen: its certificate and the issuer that signs with its key.
    struct TestCa {
        der: Vec<u8>,
        pem: String,
        issuer: Issuer<'static, KeyPair>,
    }

    fn ca(name: &str, issued_by: Option<&TestCa>) -> TestCa {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = match issued_by {
            Some(parent) => params.signed_by(&key, &parent.issuer).unwrap(),
            None => params.self_signed(&key).unwrap(),
        };
        TestCa {
            der: cert.der().to_vec(),
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    fn leaf_params() -> CertificateParams {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CountryName, "CH");
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Example AG");
        params
            .distinguished_name
            .push(DnType::CommonName, "gw1.example.net");
        params.distinguished_name.push(
            DnType::CustomDnType(vec![1, 2, 840, 113549, 1, 9, 1]),
            "ops@example.net",
        );
        params.subject_alt_names = vec![
            SanType::DnsName("gw1.example.net".try_into().unwrap()),
            SanType::IpAddress(Ipv4Addr::new(192, 0, 2, 1).into()),
            SanType::IpAddress("2001:db8::1".parse::<Ipv6Addr>().unwrap().into()),
            SanType::Rfc822Name("ops@example.net".try_into().unwrap()),
        ];
        params
    }

    fn leaf(params: &CertificateParams, issuer: &TestCa) -> Vec<u8> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        params
            .signed_by(&key, &issuer.issuer)
            .unwrap()
            .der()
            .to_vec()
    }

    fn anchors(ca: &TestCa) -> TrustAnchors {
        TrustAnchors::from_pem(ca.pem.as_bytes()).unwrap()
    }

    fn chain_error(result: Result<PeerCert, CryptoError>) -> String {
        match result {
            Err(CryptoError::Certificate(text)) => text,
            other => panic!("expected a certificate error, got {other:?}"),
        }
    }

    #[test]
    fn a_leaf_of_the_ca_validates() {
        let root = ca("Test Root", None);
        let leaf_der = leaf(&leaf_params(), &root);
        let cert = anchors(&root)
            .verify(&leaf_der, &[], SystemTime::now())
            .unwrap();
        assert_eq!(cert.der(), leaf_der.as_slice());
        assert_eq!(
            cert.subject_text(),
            "C=CH, O=Example AG, CN=gw1.example.net, E=ops@example.net"
        );
    }

    /// IKE does not depend on extended key usage: TLS-server, TLS-client and IPsec-IKE
    /// certificates are all accepted.
    #[test]
    fn any_extended_key_usage_is_accepted() {
        let root = ca("Test Root", None);
        for usage in [
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::Other(vec![1, 3, 6, 1, 5, 5, 7, 3, 17]),
        ] {
            let mut params = leaf_params();
            params.extended_key_usages = vec![usage.clone()];
            let leaf_der = leaf(&params, &root);
            assert!(
                anchors(&root)
                    .verify(&leaf_der, &[], SystemTime::now())
                    .is_ok(),
                "{usage:?}"
            );
        }
    }

    #[test]
    fn a_leaf_of_another_ca_fails() {
        let root = ca("Test Root", None);
        let other = ca("Other Root", None);
        let leaf_der = leaf(&leaf_params(), &other);
        let error = chain_error(anchors(&root).verify(&leaf_der, &[], SystemTime::now()));
        assert!(error.contains("UnknownIssuer"), "{error}");
    }

    #[test]
    fn an_expired_leaf_fails() {
        let root = ca("Test Root", None);
        let mut params = leaf_params();
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        let leaf_der = leaf(&params, &root);
        let error = chain_error(anchors(&root).verify(&leaf_der, &[], SystemTime::now()));
        assert!(error.contains("CertExpired"), "{error}");
        // Valid at a time inside its validity.
        let in_2000 = UNIX_EPOCH + Duration::from_secs(961_200_000);
        assert!(anchors(&root).verify(&leaf_der, &[], in_2000).is_ok());
    }

    #[test]
    fn an_intermediate_chain_validates() {
        let root = ca("Test Root", None);
        let intermediate = ca("Test Intermediate", Some(&root));
        let leaf_der = leaf(&leaf_params(), &intermediate);
        let anchors = anchors(&root);
        assert!(anchors
            .verify(
                &leaf_der,
                std::slice::from_ref(&intermediate.der),
                SystemTime::now()
            )
            .is_ok());
        let error = chain_error(anchors.verify(&leaf_der, &[], SystemTime::now()));
        assert!(error.contains("UnknownIssuer"), "{error}");
    }

    /// Basic constraints: a certificate that is not a CA cannot issue.
    #[test]
    fn a_leaf_cannot_act_as_an_intermediate() {
        let root = ca("Test Root", None);
        let not_ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut not_ca_params = CertificateParams::default();
        not_ca_params.is_ca = IsCa::ExplicitNoCa;
        let not_ca_der = not_ca_params
            .signed_by(&not_ca_key, &root.issuer)
            .unwrap()
            .der()
            .to_vec();
        let not_ca = TestCa {
            der: not_ca_der.clone(),
            pem: String::new(),
            issuer: Issuer::new(not_ca_params, not_ca_key),
        };
        let leaf_der = leaf(&leaf_params(), &not_ca);
        let error = chain_error(anchors(&root).verify(&leaf_der, &[not_ca_der], SystemTime::now()));
        assert!(error.contains("EndEntityUsedAsCa"), "{error}");
    }

    #[test]
    fn identities_match_subject_and_alt_names() {
        let root = ca("Test Root", None);
        let cert = PeerCert::from_der(leaf(&leaf_params(), &root)).unwrap();
        let dn = |attributes: &[(&str, &str)]| {
            Identity::Dn(
                attributes
                    .iter()
                    .map(|(attr, value)| (attr.to_string(), value.to_string()))
                    .collect(),
            )
        };
        let subject = [
            ("C", "CH"),
            ("O", "Example AG"),
            ("CN", "gw1.example.net"),
            ("E", "ops@example.net"),
        ];
        let matching = [
            dn(&subject),
            dn(&[
                ("c", "CH"),
                ("o", "Example AG"),
                ("cn", "gw1.example.net"),
                ("e", "ops@example.net"),
            ]),
            Identity::Fqdn("gw1.example.net".into()),
            Identity::Fqdn("GW1.Example.NET".into()),
            Identity::Ipv4(Ipv4Addr::new(192, 0, 2, 1)),
            Identity::Ipv6("2001:db8::1".parse().unwrap()),
            Identity::Email("ops@example.net".into()),
        ];
        for id in &matching {
            assert!(cert.matches(id), "{id:?}");
        }
        let not_matching = [
            dn(&subject[..3]),
            dn(&[subject[1], subject[0], subject[2], subject[3]]),
            dn(&[("C", "ch"), subject[1], subject[2], subject[3]]),
            Identity::Fqdn("gw2.example.net".into()),
            Identity::Fqdn("example.net".into()),
            Identity::Ipv4(Ipv4Addr::new(192, 0, 2, 2)),
            Identity::Ipv6("2001:db8::2".parse().unwrap()),
            Identity::Email("root@example.net".into()),
            Identity::KeyId(b"gw1.example.net".to_vec()),
        ];
        for id in &not_matching {
            assert!(!cert.matches(id), "{id:?}");
        }
    }

    #[test]
    fn a_subject_with_a_uid_matches_its_dn_identity() {
        let root = ca("Test Root", None);
        let mut params = leaf_params();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(
            DnType::CustomDnType(vec![0, 9, 2342, 19200300, 100, 1, 1]),
            "gw1",
        );
        params
            .distinguished_name
            .push(DnType::CommonName, "gw1.example.net");
        let cert = PeerCert::from_der(leaf(&params, &root)).unwrap();
        assert_eq!(cert.subject_text(), "UID=gw1, CN=gw1.example.net");
        assert!(cert.matches(&Identity::parse("UID=gw1, CN=gw1.example.net").unwrap()));
        let from_wire =
            Identity::from_wire(crate::identity::id_type::DER_ASN1_DN, cert.subject_der()).unwrap();
        assert!(cert.matches(&from_wire));
    }

    #[test]
    fn subject_der_is_the_encoded_name() {
        let root = ca("Test Root", None);
        let cert = PeerCert::from_der(leaf(&leaf_params(), &root)).unwrap();
        let (rest, name) = X509Name::from_der(cert.subject_der()).unwrap();
        assert!(rest.is_empty());
        assert_eq!(dn_attributes(&name), cert.subject_dn);
        assert_eq!(cert.subject_der()[0], 0x30);
    }

    // SHA-1 of pss-cert.pem's SubjectPublicKeyInfo, by Python's hashlib: the output of
    // ike/tests/vectors/gen_ike_vectors.py, pasted unchanged.
    const PSS_CERT_SPKI_SHA1: &str = "82e790a2ca865c19ad037c811fcb6b99a89f4e7f";

    #[test]
    fn certreq_data_hashes_each_anchor_key() {
        let pss_cert = include_str!("../../tests/vectors/pss-cert.pem");
        let single = TrustAnchors::from_pem(pss_cert.as_bytes()).unwrap();
        assert_eq!(hex::encode(single.certreq_data()), PSS_CERT_SPKI_SHA1);

        let root = ca("Test Root", None);
        let both = TrustAnchors::from_pem(format!("{pss_cert}{}", root.pem).as_bytes()).unwrap();
        let data = both.certreq_data();
        assert_eq!(data.len(), 40);
        assert_eq!(hex::encode(&data[..20]), PSS_CERT_SPKI_SHA1);
        assert_eq!(data[20..], anchors(&root).certreq_data());
    }

    #[test]
    fn own_chain_is_read_in_order() {
        let root = ca("Test Root", None);
        let intermediate = ca("Test Intermediate", Some(&root));
        let chain = certs_from_pem(format!("{}{}", intermediate.pem, root.pem).as_bytes()).unwrap();
        let ders: Vec<&[u8]> = chain.iter().map(PeerCert::der).collect();
        assert_eq!(ders, [&intermediate.der[..], &root.der[..]]);
    }

    #[test]
    fn malformed_certificates_are_errors() {
        let root = ca("Test Root", None);
        let garbage_pem = "-----BEGIN CERTIFICATE-----\nMIIBAAAA\n-----END CERTIFICATE-----\n";
        for bad in [
            "",
            "no pem here",
            garbage_pem,
            &root.pem[..root.pem.len() / 2],
        ] {
            assert!(TrustAnchors::from_pem(bad.as_bytes()).is_err(), "{bad}");
            assert!(certs_from_pem(bad.as_bytes()).is_err(), "{bad}");
        }
        let mut trailing = root.der.clone();
        trailing.push(0);
        assert!(PeerCert::from_der(trailing.clone()).is_err());
        assert!(PeerCert::from_der(root.der[..100].to_vec()).is_err());
        let anchors = anchors(&root);
        assert!(anchors.verify(&[], &[], SystemTime::now()).is_err());
        assert!(anchors.verify(&trailing, &[], SystemTime::now()).is_err());
        assert!(anchors
            .verify(&root.der, &[vec![1, 2, 3]], SystemTime::now())
            .is_err());
    }

    #[test]
    fn attribute_strings_of_every_kind_become_text() {
        assert_eq!(attribute_text(Tag::PrintableString, b"CH"), "CH");
        assert_eq!(
            attribute_text(Tag::Utf8String, "Zürich".as_bytes()),
            "Zürich"
        );
        assert_eq!(attribute_text(Tag::TeletexString, b"Z\xfcrich"), "Zürich");
        assert_eq!(attribute_text(Tag::BmpString, b"\x00Z\x00\xfc"), "Zü");
        assert_eq!(attribute_text(Tag::UniversalString, b"\x00\x00\x00Z"), "Z");
        assert_eq!(attribute_text(Tag::BmpString, b"\x00"), "#00");
        assert_eq!(attribute_text(Tag::OctetString, b"\x01\xab"), "#01ab");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_certificate_bytes_never_panic(
            data in proptest::collection::vec(proptest::num::u8::ANY, 0..400),
        ) {
            let _ = PeerCert::from_der(data.clone());
            let _ = TrustAnchors::from_pem(&data);
        }
    }
}
