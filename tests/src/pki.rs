//! A throw-away X.509 PKI for the IPsec suites: a root CA, intermediates and leaf
//! certificates (ECDSA P-256/P-384 or RSA-2048 keys), so a test can authenticate IKE peers
//! with certificates without any file from outside the test.
//!
//! ECDSA keys come from rcgen (ring). ring cannot generate RSA keys, so RSA keys are made
//! at run time by the `openssl genpkey` command (Debian's `openssl`, which
//! `ca-certificates` pulls in) and loaded into rcgen to be certified: no key material is
//! checked into the repository.
//!
//! Subjects are `C=CH, O=Siteward Tests, CN=<cn>`; [`TestCa::subject_dn`] and
//! [`Leaf::subject_dn`] give them in the form strongSwan's `id = ` takes.

use std::fmt;
use std::process::Command;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

const COUNTRY: &str = "CH";
const ORGANIZATION: &str = "Siteward Tests";

/// The key type of a certificate's subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Rsa2048,
    EcdsaP256,
    EcdsaP384,
}

impl KeyKind {
    /// A fresh key pair of this kind.
    fn generate(self) -> KeyPair {
        match self {
            KeyKind::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                .expect("generating an ECDSA P-256 key"),
            KeyKind::EcdsaP384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)
                .expect("generating an ECDSA P-384 key"),
            KeyKind::Rsa2048 => {
                let pem = openssl_rsa_2048();
                KeyPair::from_pem(&pem).expect("loading the RSA key made by openssl")
            }
        }
    }
}

/// A 2048-bit RSA private key in PKCS#8 PEM, made by `openssl genpkey`.
fn openssl_rsa_2048() -> String {
    let out = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .unwrap_or_else(|e| panic!("running openssl genpkey (apt install openssl): {e}"));
    assert!(
        out.status.success(),
        "openssl genpkey failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8(out.stdout).expect("openssl writes PEM (ASCII)")
}

/// A certificate authority: a self-signed root ([`TestCa::new`]) or an intermediate signed
/// by another ([`TestCa::intermediate`]). It signs leaves and further intermediates.
pub struct TestCa {
    params: CertificateParams,
    key: KeyPair,
    cert_pem: String,
    subject_dn: String,
    /// The certificates above this one, nearest first (empty for a root).
    issuers_pem: Vec<String>,
}

impl TestCa {
    /// A root CA with an ECDSA P-256 key.
    pub fn new(cn: &str) -> TestCa {
        TestCa::with_key(cn, KeyKind::EcdsaP256)
    }

    /// A root CA with a key of the given kind (an RSA CA signs with RSA PKCS#1 SHA-256).
    pub fn with_key(cn: &str, kind: KeyKind) -> TestCa {
        let params = ca_params(cn);
        let key = kind.generate();
        let cert = params
            .self_signed(&key)
            .unwrap_or_else(|e| panic!("self-signing the test CA {cn:?}: {e}"));
        TestCa {
            subject_dn: strongswan_dn(cn),
            cert_pem: cert.pem(),
            params,
            key,
            issuers_pem: Vec::new(),
        }
    }

    /// An intermediate CA (ECDSA P-256) signed by this one.
    pub fn intermediate(&self, cn: &str) -> TestCa {
        let mut params = ca_params(cn);
        params.use_authority_key_identifier_extension = true;
        let key = KeyKind::EcdsaP256.generate();
        let cert = params
            .signed_by(&key, &self.issuer())
            .unwrap_or_else(|e| panic!("signing the intermediate CA {cn:?}: {e}"));
        let mut issuers_pem = vec![self.cert_pem.clone()];
        issuers_pem.extend(self.issuers_pem.iter().cloned());
        TestCa {
            subject_dn: strongswan_dn(cn),
            cert_pem: cert.pem(),
            params,
            key,
            issuers_pem,
        }
    }

    /// This CA's certificate, PEM.
    pub fn cert_pem(&self) -> String {
        self.cert_pem.clone()
    }

    /// The certificates that issued this one up to the root, nearest first (PEM).
    pub fn issuers_pem(&self) -> &[String] {
        &self.issuers_pem
    }

    /// This CA's subject in strongSwan's form (`C=CH, O=Siteward Tests, CN=...`).
    pub fn subject_dn(&self) -> &str {
        &self.subject_dn
    }

    /// A leaf certificate for `cn` with `sans` (IP addresses become IP SANs, anything else
    /// a DNS name) and a fresh key of `key` kind, signed by this CA.
    pub fn issue_leaf(&self, cn: &str, sans: &[&str], key: KeyKind) -> Leaf {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans)
            .unwrap_or_else(|e| panic!("certificate parameters for {cn:?}: {e}"));
        params.distinguished_name = distinguished_name(cn);
        params.not_before = rcgen::date_time_ymd(2024, 1, 1);
        params.not_after = rcgen::date_time_ymd(2049, 12, 31);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.use_authority_key_identifier_extension = true;
        let key_pair = key.generate();
        let cert = params
            .signed_by(&key_pair, &self.issuer())
            .unwrap_or_else(|e| panic!("signing the leaf {cn:?}: {e}"));
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key_pair.serialize_pem(),
            subject_dn: strongswan_dn(cn),
        }
    }

    fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }
}

impl fmt::Debug for TestCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestCa")
            .field("subject_dn", &self.subject_dn)
            .field("key", &"***")
            .finish()
    }
}

/// An end-entity certificate and its private key.
#[derive(Clone)]
pub struct Leaf {
    pub cert_pem: String,
    /// PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`); a secret: not shown by Debug.
    pub key_pem: String,
    /// The subject in strongSwan's form, for `id = ` in swanctl.conf.
    pub subject_dn: String,
}

impl fmt::Debug for Leaf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Leaf")
            .field("subject_dn", &self.subject_dn)
            .field("key_pem", &"***")
            .finish()
    }
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2049, 12, 31);
    params
}

/// `C, O, CN` in this order: the order strongSwan prints and parses them in.
fn distinguished_name(cn: &str) -> DistinguishedName {
    assert!(
        !cn.is_empty() && !cn.contains([',', '=', '"', '+', '\\']),
        "test CN {cn:?} must be non-empty and free of DN syntax characters"
    );
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, COUNTRY);
    dn.push(DnType::OrganizationName, ORGANIZATION);
    dn.push(DnType::CommonName, cn);
    dn
}

fn strongswan_dn(cn: &str) -> String {
    format!("C={COUNTRY}, O={ORGANIZATION}, CN={cn}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::{FromDer, X509Certificate};

    fn der(pem: &str) -> Vec<u8> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        pem.contents
    }

    #[test]
    fn leaves_chain_to_their_issuer_with_the_requested_names() {
        let root = TestCa::new("Root");
        let sub = root.intermediate("Sub");
        let leaf = sub.issue_leaf("gw", &["gw.example", "198.51.100.1"], KeyKind::EcdsaP384);

        let root_der = der(&root.cert_pem());
        let sub_der = der(&sub.cert_pem());
        let leaf_der = der(&leaf.cert_pem);
        let (_, root_cert) = X509Certificate::from_der(&root_der).unwrap();
        let (_, sub_cert) = X509Certificate::from_der(&sub_der).unwrap();
        let (_, leaf_cert) = X509Certificate::from_der(&leaf_der).unwrap();

        assert_eq!(sub.issuers_pem(), [root.cert_pem()]);
        assert!(sub_cert
            .verify_signature(Some(root_cert.public_key()))
            .is_ok());
        assert!(leaf_cert
            .verify_signature(Some(sub_cert.public_key()))
            .is_ok());
        assert!(leaf_cert
            .verify_signature(Some(root_cert.public_key()))
            .is_err());
        assert_eq!(leaf_cert.issuer(), sub_cert.subject());
        assert!(sub_cert.is_ca() && !leaf_cert.is_ca());
        assert_eq!(
            leaf_cert.subject().to_string(),
            "C=CH, O=Siteward Tests, CN=gw"
        );
        assert_eq!(leaf.subject_dn, "C=CH, O=Siteward Tests, CN=gw");
        let sans = leaf_cert.subject_alternative_name().unwrap().unwrap();
        let names: Vec<String> = sans
            .value
            .general_names
            .iter()
            .map(|n| n.to_string())
            .collect();
        // x509-parser prints IP SANs as hex octets: 198.51.100.1.
        assert_eq!(names, ["DNSName(gw.example)", "IPAddress(c6:33:64:01)"]);
        assert!(leaf.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(!format!("{leaf:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn rsa_leaves_carry_a_2048_bit_rsa_key() {
        let ca = TestCa::with_key("RSA Root", KeyKind::Rsa2048);
        let leaf = ca.issue_leaf("rsa-gw", &["rsa-gw.example"], KeyKind::Rsa2048);
        let leaf_der = der(&leaf.cert_pem);
        let (_, cert) = X509Certificate::from_der(&leaf_der).unwrap();
        match cert.public_key().parsed().unwrap() {
            x509_parser::public_key::PublicKey::RSA(rsa) => assert_eq!(rsa.key_size(), 2048),
            other => panic!("not an RSA key: {other:?}"),
        }
        let ca_der = der(&ca.cert_pem());
        let (_, ca_cert) = X509Certificate::from_der(&ca_der).unwrap();
        assert!(cert.verify_signature(Some(ca_cert.public_key())).is_ok());
    }
}
