//! IKE identities (RFC 7296 §3.5): what an ID payload carries, and what `local_id` and
//! `remote_id` say in the configuration.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// ID Type numbers of the ID payload.
pub mod id_type {
    pub const IPV4_ADDR: u8 = 1;
    pub const FQDN: u8 = 2;
    pub const RFC822_ADDR: u8 = 3;
    pub const IPV6_ADDR: u8 = 5;
    pub const DER_ASN1_DN: u8 = 9;
    pub const KEY_ID: u8 = 11;
}

/// One relative distinguished name component of a DN, e.g. `("CN", "gw1.example.net")`.
/// The attribute is the short name in upper case (`C`, `ST`, `L`, `O`, `OU`, `CN`,
/// `E` for emailAddress, ...), or the dotted OID when it has none.
pub type DnAttribute = (String, String);

/// An IKE identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    Ipv4(Ipv4Addr),
    Ipv6(Ipv6Addr),
    /// `ID_FQDN`, compared case-insensitively.
    Fqdn(String),
    /// `ID_RFC822_ADDR` (`user@example.net`).
    Email(String),
    /// `ID_DER_ASN1_DN`, as its attributes in order.
    Dn(Vec<DnAttribute>),
    /// `ID_KEY_ID`: opaque bytes.
    KeyId(Vec<u8>),
}

/// Why an identity could not be read, from the configuration or from an ID payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("empty identity")]
    Empty,
    #[error("identity of {len} bytes; at most {max} are supported")]
    TooLong { len: usize, max: usize },
    #[error("an identity cannot contain control characters or line breaks")]
    ControlCharacter,
    #[error("an {what} identity cannot contain spaces")]
    Whitespace { what: &'static str },
    #[error(
        "\"{text}\" is not an identity: leave remote_id out to accept any peer that authenticates"
    )]
    Any { text: String },
    #[error("\"{text}\" is not a key ID: write \"@#\" and an even number of hex digits")]
    BadKeyId { text: String },
    #[error("DN component \"{component}\": {why}")]
    DnComponent {
        component: String,
        why: &'static str,
    },
    #[error(
        "unknown DN attribute \"{name}\" (known: C, ST, L, O, OU, CN, E, SN, GN, SERIALNUMBER, \
         DC, UID, or a dotted OID such as 2.5.4.12)"
    )]
    UnknownDnAttribute { name: String },
    #[error("a DN of more than {max} components is not supported")]
    TooManyComponents { max: usize },
    #[error("ID type {0} is not supported (IPv4, IPv6, FQDN, RFC 822, DN and key ID are)")]
    UnsupportedType(u8),
    #[error("an ID of type {id_type} must be {expected} bytes, got {len}")]
    AddressLength {
        id_type: u8,
        expected: usize,
        len: usize,
    },
    #[error("the ID of type {id_type} is not UTF-8 text")]
    NotText { id_type: u8 },
    #[error("the DN is not a DER-encoded Name: {0}")]
    BadDer(String),
}

/// Longest identity text or value taken: longer than any name or DN in practice, short
/// enough that an ID payload stays small.
const MAX_IDENTITY_LEN: usize = 1024;
/// strongSwan reads at most 20 RDNs; a little room beyond that.
const MAX_DN_COMPONENTS: usize = 32;

/// How a DN attribute's value is encoded in DER.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StringKind {
    /// PrintableString when the value allows it (RFC 5280 wants it for these), else UTF8String.
    Printable,
    /// IA5String when the value is ASCII (RFC 5280: emailAddress, domainComponent).
    Ia5,
    Utf8,
}

const TAG_UTF8_STRING: u8 = 0x0c;
const TAG_PRINTABLE_STRING: u8 = 0x13;
const TAG_IA5_STRING: u8 = 0x16;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;

/// The DN attributes known by name: (name, OID, encoding).
const DN_ATTRIBUTES: &[(&str, &str, StringKind)] = &[
    ("C", "2.5.4.6", StringKind::Printable),
    ("ST", "2.5.4.8", StringKind::Utf8),
    ("L", "2.5.4.7", StringKind::Utf8),
    ("O", "2.5.4.10", StringKind::Utf8),
    ("OU", "2.5.4.11", StringKind::Utf8),
    ("CN", "2.5.4.3", StringKind::Utf8),
    ("E", "1.2.840.113549.1.9.1", StringKind::Ia5),
    // Surname, as OpenSSL and strongSwan's output name it (strongSwan's *parser* reads SN as
    // serialNumber; SERIALNUMBER says that unambiguously).
    ("SN", "2.5.4.4", StringKind::Utf8),
    ("GN", "2.5.4.42", StringKind::Utf8),
    ("SERIALNUMBER", "2.5.4.5", StringKind::Printable),
    ("DC", "0.9.2342.19200300.100.1.25", StringKind::Ia5),
    ("UID", "0.9.2342.19200300.100.1.1", StringKind::Utf8),
];

/// Other spellings of known attributes, upper case.
const DN_ALIASES: &[(&str, &str)] = &[
    ("EMAIL", "E"),
    ("EMAILADDRESS", "E"),
    ("G", "GN"),
    ("GIVENNAME", "GN"),
    ("S", "SN"),
    ("SURNAME", "SN"),
];

/// The canonical attribute of a DN component's type: a known name (any case, or an alias,
/// or its OID) becomes the short name; another dotted OID stays one.
fn dn_attribute(name: &str) -> Result<String, IdentityError> {
    let upper = name.to_ascii_uppercase();
    let upper = DN_ALIASES
        .iter()
        .find(|(alias, _)| *alias == upper)
        .map_or(upper.as_str(), |(_, canonical)| canonical);
    if let Some((short, ..)) = DN_ATTRIBUTES
        .iter()
        .find(|(short, oid, _)| *short == upper || *oid == name)
    {
        return Ok(short.to_string());
    }
    if oid_der(name).is_some() {
        return Ok(name.to_string());
    }
    Err(IdentityError::UnknownDnAttribute {
        name: name.to_string(),
    })
}

/// The name strongSwan prints for the attribute with dotted OID `oid` (`CN`, `UID`...), or
/// the OID itself for one without a name. Certificates' subjects are named with it too,
/// so that a DN identity and a certificate subject always compare alike.
pub(crate) fn dn_attribute_name(oid: &str) -> String {
    DN_ATTRIBUTES
        .iter()
        .find(|(_, known, _)| *known == oid)
        .map_or_else(|| oid.to_string(), |(short, ..)| short.to_string())
}

/// The dotted OID and encoding of a canonical attribute.
fn attribute_oid(attribute: &str) -> (&str, StringKind) {
    DN_ATTRIBUTES
        .iter()
        .find(|(short, ..)| *short == attribute)
        .map_or((attribute, StringKind::Utf8), |(_, oid, kind)| (oid, *kind))
}

/// The content octets of a dotted OID; `None` if it is not one (at least two arcs, the first
/// 0-2, the second below 40 under 0 and 1, every arc a decimal `u64`).
fn oid_der(dotted: &str) -> Option<Vec<u8>> {
    let arcs: Vec<u64> = dotted
        .split('.')
        .map(|arc| {
            let digits = !arc.is_empty() && arc.bytes().all(|b| b.is_ascii_digit());
            // No leading zeros: "2.05.4" would not print back the same.
            let canonical = arc == "0" || !arc.starts_with('0');
            if digits && canonical {
                arc.parse().ok()
            } else {
                None
            }
        })
        .collect::<Option<_>>()?;
    let (&first, &second) = (arcs.first()?, arcs.get(1)?);
    if first > 2 || (first < 2 && second >= 40) {
        return None;
    }
    let mut out = Vec::new();
    let mut push_arc = |mut value: u64| {
        let mut groups = vec![(value & 0x7f) as u8];
        value >>= 7;
        while value > 0 {
            groups.push((value & 0x7f) as u8 | 0x80);
            value >>= 7;
        }
        out.extend(groups.iter().rev());
    };
    push_arc(first.checked_mul(40)?.checked_add(second)?);
    for &arc in &arcs[2..] {
        push_arc(arc);
    }
    Some(out)
}

fn is_printable_string(value: &str) -> bool {
    value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || " '()+,-./:=?".contains(c))
}

/// Appends one DER element.
pub(crate) fn push_der(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
}

/// A DN as DER: a SEQUENCE of one single-valued SET per attribute, in the order written.
fn dn_der(attributes: &[DnAttribute]) -> Vec<u8> {
    let mut rdns = Vec::new();
    for (attribute, value) in attributes {
        let (oid, kind) = attribute_oid(attribute);
        let tag = match kind {
            StringKind::Printable if is_printable_string(value) => TAG_PRINTABLE_STRING,
            StringKind::Ia5 if value.is_ascii() => TAG_IA5_STRING,
            _ => TAG_UTF8_STRING,
        };
        let mut pair = Vec::new();
        // Canonical attributes are known names or valid dotted OIDs.
        push_der(&mut pair, TAG_OID, &oid_der(oid).unwrap_or_default());
        push_der(&mut pair, tag, value.as_bytes());
        let mut sequence = Vec::new();
        push_der(&mut sequence, TAG_SEQUENCE, &pair);
        push_der(&mut rdns, TAG_SET, &sequence);
    }
    let mut name = Vec::new();
    push_der(&mut name, TAG_SEQUENCE, &rdns);
    name
}

/// Parses an LDAP-style DN as strongSwan does: components separated by `,`, or by `/` when
/// the text starts with one (`/C=CH/O=strongSwan/CN=moon`); spaces around names and
/// values are dropped.
fn parse_dn(text: &str) -> Result<Vec<DnAttribute>, IdentityError> {
    let (separator, body) = match text.strip_prefix('/') {
        Some(rest) => ('/', rest),
        None => (',', text),
    };
    let components: Vec<&str> = body.split(separator).collect();
    if components.len() > MAX_DN_COMPONENTS {
        return Err(IdentityError::TooManyComponents {
            max: MAX_DN_COMPONENTS,
        });
    }
    components
        .into_iter()
        .map(|component| {
            let bad = |why| IdentityError::DnComponent {
                component: component.trim().to_string(),
                why,
            };
            let (name, value) = component
                .split_once('=')
                .ok_or_else(|| bad("expected TYPE=value, e.g. CN=gw1.example.net"))?;
            let name = name.trim();
            if name.is_empty() {
                return Err(bad("the attribute type before '=' is missing"));
            }
            Ok((dn_attribute(name)?, value.trim().to_string()))
        })
        .collect()
}

/// Writes a DN the way strongSwan prints one (`C=CH, O=strongSwan, CN=moon`). A value
/// holding a `,` makes it use the `/C=CH/O=...` form instead, which reads back the same.
fn write_dn(f: &mut fmt::Formatter<'_>, attributes: &[DnAttribute]) -> fmt::Result {
    let commas = attributes.iter().any(|(_, value)| value.contains(','));
    let slashes = attributes.iter().any(|(_, value)| value.contains('/'));
    let (lead, separator) = if commas && !slashes {
        ("/", "/")
    } else {
        ("", ", ")
    };
    f.write_str(lead)?;
    for (i, (attribute, value)) in attributes.iter().enumerate() {
        if i > 0 {
            f.write_str(separator)?;
        }
        write!(f, "{attribute}={value}")?;
    }
    Ok(())
}

fn check_text(text: &str) -> Result<(), IdentityError> {
    if text.len() > MAX_IDENTITY_LEN {
        return Err(IdentityError::TooLong {
            len: text.len(),
            max: MAX_IDENTITY_LEN,
        });
    }
    if text.chars().any(char::is_control) {
        return Err(IdentityError::ControlCharacter);
    }
    Ok(())
}

/// A name or address identity: not empty, no spaces.
fn checked_name(name: &str, what: &'static str) -> Result<String, IdentityError> {
    if name.is_empty() {
        return Err(IdentityError::Empty);
    }
    if name.chars().any(char::is_whitespace) {
        return Err(IdentityError::Whitespace { what });
    }
    Ok(name.to_string())
}

impl Identity {
    /// Reads an identity as strongSwan does: an IP literal is an address; text with `=` is
    /// a DN (`C=CH, O=strongSwan, CN=moon`, or `/`-separated); `@name` is an FQDN (the `@`
    /// keeps a name that looks like something else one), `@#` and hex digits a key ID, and
    /// `user@host` an email address; anything else an FQDN.
    pub fn parse(text: &str) -> Result<Identity, IdentityError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(IdentityError::Empty);
        }
        check_text(text)?;
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(match ip {
                IpAddr::V4(ip) => Identity::Ipv4(ip),
                IpAddr::V6(ip) => Identity::Ipv6(ip),
            });
        }
        if text.starts_with('%') {
            return Err(IdentityError::Any {
                text: text.to_string(),
            });
        }
        if text.contains('=') {
            return parse_dn(text).map(Identity::Dn);
        }
        match text.strip_prefix('@') {
            Some(rest) => match rest.strip_prefix('#') {
                Some(hex) => {
                    let bad = || IdentityError::BadKeyId {
                        text: text.to_string(),
                    };
                    let bytes = hex::decode(hex).map_err(|_| bad())?;
                    if bytes.is_empty() {
                        return Err(bad());
                    }
                    Ok(Identity::KeyId(bytes))
                }
                None => checked_name(rest, "FQDN").map(Identity::Fqdn),
            },
            None if text.contains('@') => checked_name(text, "email").map(Identity::Email),
            None => checked_name(text, "FQDN").map(Identity::Fqdn),
        }
    }

    /// The ID payload's type and data (RFC 7296 §3.5). A DN is DER: C and SERIALNUMBER as
    /// PrintableString, E and DC as IA5String when their values allow, the rest UTF8String
    /// (strongSwan compares DNs by attribute type and value, not by string type).
    pub fn to_wire(&self) -> (u8, Vec<u8>) {
        match self {
            Identity::Ipv4(ip) => (id_type::IPV4_ADDR, ip.octets().to_vec()),
            Identity::Ipv6(ip) => (id_type::IPV6_ADDR, ip.octets().to_vec()),
            Identity::Fqdn(name) => (id_type::FQDN, name.as_bytes().to_vec()),
            Identity::Email(address) => (id_type::RFC822_ADDR, address.as_bytes().to_vec()),
            Identity::Dn(attributes) => (id_type::DER_ASN1_DN, dn_der(attributes)),
            Identity::KeyId(bytes) => (id_type::KEY_ID, bytes.clone()),
        }
    }

    /// Reads an ID payload's type and data. Text with control characters is refused, so a
    /// peer's identity can be logged as it is.
    pub fn from_wire(id_type: u8, data: &[u8]) -> Result<Identity, IdentityError> {
        let text = |data: &[u8]| -> Result<String, IdentityError> {
            let text = std::str::from_utf8(data).map_err(|_| IdentityError::NotText { id_type })?;
            if text.is_empty() {
                return Err(IdentityError::Empty);
            }
            check_text(text)?;
            Ok(text.to_string())
        };
        let address = |expected: usize| -> Result<(), IdentityError> {
            if data.len() == expected {
                Ok(())
            } else {
                Err(IdentityError::AddressLength {
                    id_type,
                    expected,
                    len: data.len(),
                })
            }
        };
        match id_type {
            id_type::IPV4_ADDR => {
                address(4)?;
                let octets: [u8; 4] = data.try_into().unwrap_or_default();
                Ok(Identity::Ipv4(Ipv4Addr::from(octets)))
            }
            id_type::IPV6_ADDR => {
                address(16)?;
                let octets: [u8; 16] = data.try_into().unwrap_or_default();
                Ok(Identity::Ipv6(Ipv6Addr::from(octets)))
            }
            id_type::FQDN => text(data).map(Identity::Fqdn),
            id_type::RFC822_ADDR => text(data).map(Identity::Email),
            id_type::DER_ASN1_DN => dn_from_der(data).map(Identity::Dn),
            id_type::KEY_ID if data.is_empty() => Err(IdentityError::Empty),
            id_type::KEY_ID => Ok(Identity::KeyId(data.to_vec())),
            other => Err(IdentityError::UnsupportedType(other)),
        }
    }
}

/// The attributes of a DER Name, multi-valued RDNs flattened in order (as strongSwan does).
fn dn_from_der(data: &[u8]) -> Result<Vec<DnAttribute>, IdentityError> {
    use x509_parser::asn1_rs::Tag;
    use x509_parser::prelude::FromDer;
    use x509_parser::x509::X509Name;

    let bad = |why: &str| IdentityError::BadDer(why.to_string());
    let (rest, name) = X509Name::from_der(data).map_err(|e| bad(&e.to_string()))?;
    if !rest.is_empty() {
        return Err(bad("trailing bytes after the Name"));
    }
    let mut attributes = Vec::new();
    if name.iter_attributes().next().is_none() {
        return Err(IdentityError::Empty);
    }
    for pair in name.iter_attributes() {
        if attributes.len() == MAX_DN_COMPONENTS {
            return Err(IdentityError::TooManyComponents {
                max: MAX_DN_COMPONENTS,
            });
        }
        let dotted = pair.attr_type().to_id_string();
        let attribute =
            dn_attribute(&dotted).map_err(|_| bad("an attribute type is not an OID"))?;
        let value = pair.attr_value();
        let bytes = value.as_bytes();
        let text = match value.tag() {
            Tag::BmpString => {
                let units: Vec<u16> = bytes
                    .chunks(2)
                    .map(|pair| match pair {
                        [hi, lo] => Ok(u16::from_be_bytes([*hi, *lo])),
                        _ => Err(bad("a BMPString of odd length")),
                    })
                    .collect::<Result<_, _>>()?;
                String::from_utf16(&units).map_err(|_| bad("a BMPString that is not UTF-16"))?
            }
            Tag::UniversalString => bytes
                .chunks(4)
                .map(|quad| {
                    <[u8; 4]>::try_from(quad)
                        .ok()
                        .and_then(|quad| char::from_u32(u32::from_be_bytes(quad)))
                        .ok_or_else(|| bad("a UniversalString that is not UTF-32"))
                })
                .collect::<Result<_, _>>()?,
            // T.61 in practice carries Latin-1.
            Tag::TeletexString => bytes.iter().map(|&b| char::from(b)).collect(),
            _ => pair
                .as_str()
                .map_err(|_| bad("an attribute value is not a string"))?
                .to_string(),
        };
        check_text(&text)?;
        attributes.push((attribute, text));
    }
    Ok(attributes)
}

/// strongSwan's notation, which [`Identity::parse`] reads back for every identity it
/// produces: `192.0.2.1`, `gw1.example.net` (`@...` when the name would read as something
/// else), `user@example.net`, `C=CH, O=strongSwan, CN=moon`, `@#0a1b`.
impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Ipv4(ip) => write!(f, "{ip}"),
            Identity::Ipv6(ip) => write!(f, "{ip}"),
            Identity::Fqdn(name) => {
                let ambiguous =
                    name.contains('@') || name.starts_with('%') || name.parse::<IpAddr>().is_ok();
                if ambiguous {
                    write!(f, "@{name}")
                } else {
                    f.write_str(name)
                }
            }
            Identity::Email(address) => f.write_str(address),
            Identity::Dn(attributes) => write_dn(f, attributes),
            Identity::KeyId(bytes) => write!(f, "@#{}", hex::encode(bytes)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dn(pairs: &[(&str, &str)]) -> Identity {
        Identity::Dn(
            pairs
                .iter()
                .map(|(attribute, value)| (attribute.to_string(), value.to_string()))
                .collect(),
        )
    }

    fn parse(text: &str) -> Identity {
        Identity::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    const MOON: &[(&str, &str)] = &[("C", "CH"), ("O", "strongSwan"), ("CN", "moon")];

    #[test]
    fn parse_follows_strongswan_rules() {
        for (text, expected) in [
            ("192.0.2.1", Identity::Ipv4(Ipv4Addr::new(192, 0, 2, 1))),
            (
                "2001:db8::1",
                Identity::Ipv6("2001:db8::1".parse().unwrap()),
            ),
            ("gw1.example.net", Identity::Fqdn("gw1.example.net".into())),
            ("@gw1.example.net", Identity::Fqdn("gw1.example.net".into())),
            // The @ keeps an address-looking name a name.
            ("@192.0.2.1", Identity::Fqdn("192.0.2.1".into())),
            ("moon", Identity::Fqdn("moon".into())),
            (
                "carol@example.net",
                Identity::Email("carol@example.net".into()),
            ),
            ("@#0a1B2c", Identity::KeyId(vec![0x0a, 0x1b, 0x2c])),
            ("C=CH, O=strongSwan, CN=moon", dn(MOON)),
            ("  C=CH,O=strongSwan ,  CN=moon  ", dn(MOON)),
            ("/C=CH/O=strongSwan/CN=moon", dn(MOON)),
            ("c=CH, o=strongSwan, cn=moon", dn(MOON)),
            ("2.5.4.6=CH, 2.5.4.10=strongSwan, 2.5.4.3=moon", dn(MOON)),
            (
                "emailAddress=ops@example.net, G=Ada, S=Lovelace, serialNumber=42",
                dn(&[
                    ("E", "ops@example.net"),
                    ("GN", "Ada"),
                    ("SN", "Lovelace"),
                    ("SERIALNUMBER", "42"),
                ]),
            ),
            (
                "DC=net, DC=example, UID=gw1, 2.5.4.12=Gateway",
                dn(&[
                    ("DC", "net"),
                    ("DC", "example"),
                    ("UID", "gw1"),
                    ("2.5.4.12", "Gateway"),
                ]),
            ),
            // A value may hold '=' and the other separator.
            ("CN=a=b, OU=R/D", dn(&[("CN", "a=b"), ("OU", "R/D")])),
            (
                "/O=Acme, Inc./CN=gw1",
                dn(&[("O", "Acme, Inc."), ("CN", "gw1")]),
            ),
        ] {
            assert_eq!(parse(text), expected, "{text}");
        }
    }

    #[test]
    fn display_is_strongswan_notation() {
        for (text, shown) in [
            ("192.0.2.1", "192.0.2.1"),
            ("2001:DB8::1", "2001:db8::1"),
            ("@gw1.example.net", "gw1.example.net"),
            ("@192.0.2.1", "@192.0.2.1"),
            ("carol@example.net", "carol@example.net"),
            ("@#0A1B", "@#0a1b"),
            ("/c=CH/o=strongSwan/cn=moon", "C=CH, O=strongSwan, CN=moon"),
            ("O=Acme/Ops", "O=Acme/Ops"),
            ("/O=Acme, Inc./CN=gw1", "/O=Acme, Inc./CN=gw1"),
            ("1.2.3.4.5=x", "1.2.3.4.5=x"),
        ] {
            let identity = parse(text);
            assert_eq!(identity.to_string(), shown, "{text}");
            assert_eq!(parse(shown), identity, "{shown}");
        }
        // From the wire, a name that could read as an email or key ID keeps its type.
        for name in ["user@host", "%any", "#cafe"] {
            let identity = Identity::Fqdn(name.into());
            assert_eq!(parse(&identity.to_string()), identity, "{name}");
        }
    }

    #[test]
    fn bad_identities_are_refused_with_the_reason() {
        let long = "a".repeat(MAX_IDENTITY_LEN + 1);
        let many = vec!["CN=x"; MAX_DN_COMPONENTS + 1].join(",");
        for (text, expected) in [
            ("", IdentityError::Empty),
            ("  ", IdentityError::Empty),
            ("@", IdentityError::Empty),
            (
                "%any",
                IdentityError::Any {
                    text: "%any".into(),
                },
            ),
            (
                "@#abc",
                IdentityError::BadKeyId {
                    text: "@#abc".into(),
                },
            ),
            ("@#", IdentityError::BadKeyId { text: "@#".into() }),
            (
                "@#zz",
                IdentityError::BadKeyId {
                    text: "@#zz".into(),
                },
            ),
            (
                "gw 1.example.net",
                IdentityError::Whitespace { what: "FQDN" },
            ),
            (
                "carol @example.net",
                IdentityError::Whitespace { what: "email" },
            ),
            ("gw1\n.example.net", IdentityError::ControlCharacter),
            (
                long.as_str(),
                IdentityError::TooLong {
                    len: MAX_IDENTITY_LEN + 1,
                    max: MAX_IDENTITY_LEN,
                },
            ),
            (
                many.as_str(),
                IdentityError::TooManyComponents {
                    max: MAX_DN_COMPONENTS,
                },
            ),
            (
                "C=CH, moon",
                IdentityError::DnComponent {
                    component: "moon".into(),
                    why: "expected TYPE=value, e.g. CN=gw1.example.net",
                },
            ),
            (
                "C=CH, =moon",
                IdentityError::DnComponent {
                    component: "=moon".into(),
                    why: "the attribute type before '=' is missing",
                },
            ),
            (
                "XX=moon",
                IdentityError::UnknownDnAttribute { name: "XX".into() },
            ),
            (
                "3.1=moon",
                IdentityError::UnknownDnAttribute { name: "3.1".into() },
            ),
            (
                "1.40=moon",
                IdentityError::UnknownDnAttribute {
                    name: "1.40".into(),
                },
            ),
            (
                "2.05.4=moon",
                IdentityError::UnknownDnAttribute {
                    name: "2.05.4".into(),
                },
            ),
        ] {
            assert_eq!(Identity::parse(text), Err(expected), "{text:?}");
        }
        let message = Identity::parse("XX=moon").unwrap_err().to_string();
        assert!(
            message.contains("\"XX\"") && message.contains("SERIALNUMBER"),
            "{message}"
        );
    }

    #[test]
    fn wire_form_round_trips() {
        for text in [
            "192.0.2.1",
            "2001:db8::1",
            "gw1.example.net",
            "carol@example.net",
            "@#0a1b2c",
            "C=CH, ST=Zürich, O=strongSwan, OU=R&D, CN=moon, E=moon@example.net",
            "2.5.4.12=Gateway, 1.3.6.1.4.1.99999.1=x",
            "DC=net, CN=",
        ] {
            let identity = parse(text);
            let (id_type, data) = identity.to_wire();
            assert_eq!(Identity::from_wire(id_type, &data), Ok(identity), "{text}");
        }
        assert_eq!(
            parse("192.0.2.1").to_wire(),
            (id_type::IPV4_ADDR, vec![192, 0, 2, 1])
        );
        assert_eq!(
            parse("gw1.example.net").to_wire(),
            (id_type::FQDN, b"gw1.example.net".to_vec())
        );
        assert_eq!(parse("carol@example.net").to_wire().0, id_type::RFC822_ADDR);
        assert_eq!(parse("@#00ff").to_wire(), (id_type::KEY_ID, vec![0, 0xff]));
    }

    #[test]
    fn a_dn_is_encoded_as_a_der_name() {
        let (id_type, der) = parse("C=CH, CN=moon").to_wire();
        assert_eq!(id_type, id_type::DER_ASN1_DN);
        #[rustfmt::skip]
        let expected = [
            0x30, 0x1c,
              0x31, 0x0b, 0x30, 0x09, 0x06, 0x03, 0x55, 0x04, 0x06,
                                      0x13, 0x02, b'C', b'H',
              0x31, 0x0d, 0x30, 0x0b, 0x06, 0x03, 0x55, 0x04, 0x03,
                                      0x0c, 0x04, b'm', b'o', b'o', b'n',
        ];
        assert_eq!(der, expected);
        // Long values take the long length form.
        let value = "x".repeat(300);
        let (_, der) = parse(&format!("CN={value}")).to_wire();
        assert_eq!(&der[..4], [0x30, 0x82, 0x01, 0x3d]);
        assert_eq!(
            Identity::from_wire(id_type::DER_ASN1_DN, &der),
            Ok(dn(&[("CN", value.as_str())]))
        );
    }

    /// The subject DER of a certificate made by rcgen for `dn`.
    fn rcgen_subject(dn: rcgen::DistinguishedName) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = dn;
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(cert.der()).unwrap();
        parsed.subject().as_raw().to_vec()
    }

    #[test]
    fn a_certificate_subject_decodes_to_its_attributes_and_encodes_the_same() {
        use rcgen::string::{Ia5String, PrintableString};
        use rcgen::{DnType, DnValue};
        let mut subject = rcgen::DistinguishedName::new();
        subject.push(
            DnType::CountryName,
            DnValue::PrintableString(PrintableString::try_from("CH").unwrap()),
        );
        subject.push(DnType::StateOrProvinceName, "Zürich");
        subject.push(DnType::LocalityName, "Rapperswil");
        subject.push(DnType::OrganizationName, "strongSwan");
        subject.push(DnType::OrganizationalUnitName, "Test");
        subject.push(DnType::CommonName, "moon.example.net");
        subject.push(
            DnType::CustomDnType(vec![1, 2, 840, 113549, 1, 9, 1]),
            DnValue::Ia5String(Ia5String::try_from("moon@example.net").unwrap()),
        );
        subject.push(DnType::CustomDnType(vec![2, 5, 4, 12]), "Gateway");
        let der = rcgen_subject(subject);

        let expected = dn(&[
            ("C", "CH"),
            ("ST", "Zürich"),
            ("L", "Rapperswil"),
            ("O", "strongSwan"),
            ("OU", "Test"),
            ("CN", "moon.example.net"),
            ("E", "moon@example.net"),
            ("2.5.4.12", "Gateway"),
        ]);
        assert_eq!(
            Identity::from_wire(id_type::DER_ASN1_DN, &der),
            Ok(expected.clone())
        );
        assert_eq!(
            expected.to_string(),
            "C=CH, ST=Zürich, L=Rapperswil, O=strongSwan, OU=Test, CN=moon.example.net, \
             E=moon@example.net, 2.5.4.12=Gateway"
        );
        // The same string types as the certificate: byte for byte the same Name.
        assert_eq!(
            parse(&expected.to_string()).to_wire(),
            (id_type::DER_ASN1_DN, der)
        );
    }

    #[test]
    fn other_string_types_of_a_subject_decode() {
        use rcgen::string::{BmpString, TeletexString, UniversalString};
        use rcgen::{DnType, DnValue};
        let mut subject = rcgen::DistinguishedName::new();
        subject.push(
            DnType::OrganizationName,
            DnValue::BmpString(BmpString::try_from("Zürich AG").unwrap()),
        );
        subject.push(
            DnType::OrganizationalUnitName,
            DnValue::UniversalString(UniversalString::try_from("Ops ☎").unwrap()),
        );
        subject.push(
            DnType::CommonName,
            DnValue::TeletexString(TeletexString::try_from("gw1").unwrap()),
        );
        let der = rcgen_subject(subject);
        assert_eq!(
            Identity::from_wire(id_type::DER_ASN1_DN, &der),
            Ok(dn(&[("O", "Zürich AG"), ("OU", "Ops ☎"), ("CN", "gw1")]))
        );
    }

    #[test]
    fn bad_wire_identities_are_refused() {
        assert_eq!(
            Identity::from_wire(id_type::IPV4_ADDR, &[192, 0, 2]),
            Err(IdentityError::AddressLength {
                id_type: 1,
                expected: 4,
                len: 3
            })
        );
        assert!(matches!(
            Identity::from_wire(id_type::IPV6_ADDR, &[0; 4]),
            Err(IdentityError::AddressLength { expected: 16, .. })
        ));
        // ID_IPV4_ADDR_SUBNET and ID_DER_ASN1_GN are not spoken.
        assert_eq!(
            Identity::from_wire(4, &[0; 8]),
            Err(IdentityError::UnsupportedType(4))
        );
        assert_eq!(
            Identity::from_wire(10, &[0x30, 0x00]),
            Err(IdentityError::UnsupportedType(10))
        );
        assert_eq!(
            Identity::from_wire(id_type::FQDN, &[0xff, 0xfe]),
            Err(IdentityError::NotText { id_type: 2 })
        );
        assert_eq!(
            Identity::from_wire(id_type::FQDN, b"gw1\x1b[31m"),
            Err(IdentityError::ControlCharacter)
        );
        assert_eq!(
            Identity::from_wire(id_type::RFC822_ADDR, b""),
            Err(IdentityError::Empty)
        );
        assert_eq!(
            Identity::from_wire(id_type::KEY_ID, b""),
            Err(IdentityError::Empty)
        );
        assert_eq!(
            Identity::from_wire(id_type::DER_ASN1_DN, &[0x30, 0x00]),
            Err(IdentityError::Empty)
        );
        let (_, mut der) = parse("CN=moon").to_wire();
        der.push(0);
        assert!(matches!(
            Identity::from_wire(id_type::DER_ASN1_DN, &der),
            Err(IdentityError::BadDer(_))
        ));
        for garbage in [&[][..], &[0x30], &[0x30, 0x05, 0x31], &[0x04, 0x00]] {
            assert!(matches!(
                Identity::from_wire(id_type::DER_ASN1_DN, garbage),
                Err(IdentityError::BadDer(_))
            ));
        }
        let der = dn_der(&[("CN".into(), "a\u{7f}b".into())]);
        assert_eq!(
            Identity::from_wire(id_type::DER_ASN1_DN, &der),
            Err(IdentityError::ControlCharacter)
        );
    }

    fn attribute() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(
                DN_ATTRIBUTES
                    .iter()
                    .map(|(name, ..)| *name)
                    .collect::<Vec<_>>()
            )
            .prop_map(String::from),
            Just("2.5.4.12".to_string()),
            Just("1.3.6.1.4.1.32473.1".to_string()),
        ]
    }

    fn identity() -> impl Strategy<Value = Identity> {
        // DN values: no surrounding spaces (dropped when read), and not both separators.
        let value = "[A-Za-z0-9 ,./=@&ü-]{0,12}".prop_filter("trimmed", |v| v.trim() == v);
        let dn = prop::collection::vec((attribute(), value), 1..6).prop_filter(
            "one separator at most",
            |pairs| {
                !(pairs.iter().any(|(_, v)| v.contains(','))
                    && pairs.iter().any(|(_, v)| v.contains('/')))
            },
        );
        prop_oneof![
            any::<[u8; 4]>().prop_map(|o| Identity::Ipv4(Ipv4Addr::from(o))),
            any::<[u8; 16]>().prop_map(|o| Identity::Ipv6(Ipv6Addr::from(o))),
            "[a-z0-9.:-]{1,30}".prop_map(Identity::Fqdn),
            "[a-z0-9.]{1,12}@[a-z0-9.-]{1,12}".prop_map(Identity::Email),
            dn.prop_map(Identity::Dn),
            prop::collection::vec(any::<u8>(), 1..24).prop_map(Identity::KeyId),
        ]
    }

    proptest! {
        #[test]
        fn display_and_parse_round_trip(identity in identity()) {
            prop_assert_eq!(Identity::parse(&identity.to_string()), Ok(identity));
        }

        #[test]
        fn wire_round_trips(identity in identity()) {
            let (id_type, data) = identity.to_wire();
            prop_assert_eq!(Identity::from_wire(id_type, &data), Ok(identity));
        }

        #[test]
        fn reading_never_panics(id_type in 0u8..16, data in prop::collection::vec(any::<u8>(), 0..64), text in ".{0,40}") {
            let _ = Identity::from_wire(id_type, &data);
            let _ = Identity::parse(&text);
        }
    }
}
