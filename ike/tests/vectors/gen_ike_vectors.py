#!/usr/bin/env python3
"""Known-answer vectors for siteward-ike's key derivation, DH and AUTH, computed with
Python's standard hmac/hashlib/pow and the `cryptography` package, independently of the
Rust code. The printed constants are pasted into the unit tests of
ike/src/crypto/{keys,dh,auth,certs}.rs; rerun and re-paste if an input changes.

It also writes test-only private keys (RSA PKCS#1 and PKCS#8, P-256 SEC1 and PKCS#8,
P-384 SEC1 without its public key and PKCS#8) and a self-signed certificate for the RSA key
next to itself. Those keys and the RSA-PSS signature are freshly random on each run (the
tests only need one consistent set); everything else is deterministic.

It also checks the RFC 7748 and RFC 5903 vectors typed into the DH tests against the
`cryptography` package, so a typo there fails here first.

Usage: python3 ike/tests/vectors/gen_ike_vectors.py
"""

import base64
import datetime
import hashlib
import hmac
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, x25519
from cryptography.x509.oid import NameOID

HERE = os.path.dirname(os.path.abspath(__file__))
HASHES = {"sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}


def prf(alg, key, *data):
    return hmac.new(key, b"".join(data), HASHES[alg]).digest()


def prf_plus(alg, key, seed, length):
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = prf(alg, key, block, seed, bytes([counter]))
        out += block
        counter += 1
    return out[:length]


def pattern(length, start, step):
    return bytes((start + i * step) & 0xFF for i in range(length))


def rust_const(name, value):
    if isinstance(value, bytes):
        value = value.hex()
    if len(value) <= 64:
        print(f'const {name}: &str = "{value}";')
    else:
        chunks = [value[i : i + 64] for i in range(0, len(value), 64)]
        body = "\\\n    ".join(chunks)
        print(f'const {name}: &str = "\\\n    {body}";')


def split(keymat, lengths):
    keys, offset = [], 0
    for length in lengths:
        keys.append(keymat[offset : offset + length])
        offset += length
    return keys


IKE_KEY_NAMES = ["SK_D", "SK_AI", "SK_AR", "SK_EI", "SK_ER", "SK_PI", "SK_PR"]


def ike_keys(prefix, prf_alg, prf_len, integ_len, encr_len, skeyseed, ni, nr, spi_i, spi_r):
    lengths = [prf_len, integ_len, integ_len, encr_len, encr_len, prf_len, prf_len]
    seed = ni + nr + spi_i.to_bytes(8, "big") + spi_r.to_bytes(8, "big")
    keymat = prf_plus(prf_alg, skeyseed, seed, sum(lengths))
    rust_const(f"{prefix}_SKEYSEED", skeyseed)
    for name, key in zip(IKE_KEY_NAMES, split(keymat, lengths)):
        rust_const(f"{prefix}_{name}", key)


SPI_I = 0x0102030405060708
SPI_R = 0x1112131415161718


def keys_vectors():
    print("// keys.rs")
    # aes256gcm16-prfsha256: no integrity keys, SK_e = 32-byte key + 4-byte salt.
    shared = pattern(32, 0x01, 7)
    ni, nr = pattern(32, 0x10, 3), pattern(32, 0x80, 5)
    skeyseed = prf("sha256", ni + nr, shared)
    ike_keys("GCM", "sha256", 32, 0, 36, skeyseed, ni, nr, SPI_I, SPI_R)

    # aes256-sha256-prfsha384 with a 256-byte (MODP) shared secret and nonces of different
    # lengths: SK_a 32 bytes (HMAC-SHA2-256), SK_e 32, SK_d/SK_p 48.
    shared = pattern(256, 0x33, 11)
    ni, nr = pattern(16, 0x21, 1), pattern(24, 0x42, 9)
    skeyseed = prf("sha384", ni + nr, shared)
    ike_keys("CBC", "sha384", 48, 32, 32, skeyseed, ni, nr, SPI_I, SPI_R)

    # IKE SA rekey: old PRF sha256 with the old SK_d, new suite aes256gcm16-prfsha384.
    old_sk_d = pattern(32, 0x5A, 13)
    shared = pattern(32, 0x07, 29)
    ni, nr = pattern(32, 0x99, 7), pattern(32, 0x0F, 17)
    new_spi_i, new_spi_r = 0xA1A2A3A4A5A6A7A8, 0xB1B2B3B4B5B6B7B8
    skeyseed = prf("sha256", old_sk_d, shared, ni, nr)
    ike_keys("REKEY", "sha384", 48, 0, 36, skeyseed, ni, nr, new_spi_i, new_spi_r)

    # CHILD_SA KEYMAT, SK_d from prfsha256: aes256gcm16 without PFS, then
    # aes256-sha256 with a PFS shared secret.
    sk_d = pattern(32, 0xC3, 19)
    ni, nr = pattern(32, 0x31, 3), pattern(32, 0x64, 23)
    for name, key in zip(
        ["ENCR_I", "INTEG_I", "ENCR_R", "INTEG_R"],
        split(prf_plus("sha256", sk_d, ni + nr, 72), [36, 0, 36, 0]),
    ):
        rust_const(f"CHILD_GCM_{name}", key)
    pfs = pattern(32, 0xE0, 31)
    for name, key in zip(
        ["ENCR_I", "INTEG_I", "ENCR_R", "INTEG_R"],
        split(prf_plus("sha256", sk_d, pfs + ni + nr, 128), [32, 32, 32, 32]),
    ):
        rust_const(f"CHILD_CBC_PFS_{name}", key)


MODP2048_P = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05"
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718"
    "3995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF",
    16,
)


def dh_vectors():
    print("// dh.rs")
    # MODP 2048 with fixed 512-bit exponents (the exponent size Siteward uses).
    a = int.from_bytes(pattern(64, 0x9D, 37), "big")
    b = int.from_bytes(pattern(64, 0x2B, 53), "big")
    g_a, g_b = pow(2, a, MODP2048_P), pow(2, b, MODP2048_P)
    g_ab = pow(g_b, a, MODP2048_P)
    assert g_ab == pow(g_a, b, MODP2048_P)
    rust_const("MODP_PRIVATE_A", pattern(64, 0x9D, 37))
    rust_const("MODP_PUBLIC_A", g_a.to_bytes(256, "big"))
    rust_const("MODP_PUBLIC_B", g_b.to_bytes(256, "big"))
    rust_const("MODP_SHARED", g_ab.to_bytes(256, "big"))

    # RFC 7748 §6.1.
    alice = x25519.X25519PrivateKey.from_private_bytes(
        bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    )
    bob_public = bytes.fromhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
    assert alice.public_key().public_bytes_raw().hex() == (
        "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
    )
    assert alice.exchange(x25519.X25519PublicKey.from_public_bytes(bob_public)).hex() == (
        "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
    )

    # RFC 5903 §8.1 and §8.2.
    for curve, i, gix, giy, r, grx, gry, girx in [
        (
            ec.SECP256R1(),
            "c88f01f510d9ac3f70a292daa2316de544e9aab8afe84049c62a9c57862d1433",
            "dad0b65394221cf9b051e1feca5787d098dfe637fc90b9ef945d0c3772581180",
            "5271a0461cdb8252d61f1c456fa3e59ab1f45b33accf5f58389e0577b8990bb3",
            "c6ef9c5d78ae012a011164acb397ce2088685d8f06bf9be0b283ab46476bee53",
            "d12dfb5289c8d4f81208b70270398c342296970a0bccb74c736fc7554494bf63",
            "56fbf3ca366cc23e8157854c13c58d6aac23f046ada30f8353e74f33039872ab",
            "d6840f6b42f6edafd13116e0e12565202fef8e9ece7dce03812464d04b9442de",
        ),
        (
            ec.SECP384R1(),
            "099f3c7034d4a2c699884d73a375a67f7624ef7c6b3c0f160647b67414dce655"
            "e35b538041e649ee3faef896783ab194",
            "667842d7d180ac2cde6f74f37551f55755c7645c20ef73e31634fe72b4c55ee6"
            "de3ac808acb4bdb4c88732aee95f41aa",
            "9482ed1fc0eeb9cafc4984625ccfc23f65032149e0e144ada024181535a0f38e"
            "eb9fcff3c2c947dae69b4c634573a81c",
            "41cb0779b4bdb85d47846725fbec3c9430fab46cc8dc5060855cc9bda0aa2942"
            "e0308312916b8ed2960e4bd55a7448fc",
            "e558dbef53eecde3d3fccfc1aea08a89a987475d12fd950d83cfa41732bc509d"
            "0d1ac43a0336def96fda41d0774a3571",
            "dcfbec7aacf3196472169e838430367f66eebe3c6e70c416dd5f0c68759dd1ff"
            "f83fa40142209dff5eaad96db9e6386c",
            "11187331c279962d93d604243fd592cb9d0a926f422e47187521287e7156c5c4"
            "d603135569b9e9d09cf5d4a270f59746",
        ),
    ]:
        size = len(i) // 2
        key_i = ec.derive_private_key(int(i, 16), curve)
        key_r = ec.derive_private_key(int(r, 16), curve)
        for key, x, y in [(key_i, gix, giy), (key_r, grx, gry)]:
            numbers = key.public_key().public_numbers()
            assert numbers.x.to_bytes(size, "big").hex() == x
            assert numbers.y.to_bytes(size, "big").hex() == y
        assert key_i.exchange(ec.ECDH(), key_r.public_key()).hex() == girx
    print("// RFC 7748 §6.1 and RFC 5903 §8.1/§8.2 vectors in dh.rs confirmed")


def auth_vectors():
    print("// auth.rs")
    # The initiator's PSK AUTH (§2.15): message | Nr | prf(SK_pi, IDi'), then
    # prf(prf(PSK, "Key Pad for IKEv2"), octets), with prfsha256.
    message = pattern(120, 0x20, 1)
    peer_nonce = pattern(32, 0xA0, 3)
    sk_pi = pattern(32, 0x44, 7)
    id_body = bytes([2, 0, 0, 0]) + b"gw1.example.net"
    octets = message + peer_nonce + prf("sha256", sk_pi, id_body)
    psk = b"correct horse battery staple"
    auth = prf("sha256", prf("sha256", psk, b"Key Pad for IKEv2"), octets)
    rust_const("PSK_SIGNED_OCTETS", octets)
    rust_const("PSK_AUTH", auth)


def der(tag, content):
    length = len(content)
    if length < 0x80:
        return bytes([tag, length]) + content
    encoded = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(encoded)]) + encoded + content


def write_pem(name, data):
    with open(os.path.join(HERE, name), "wb") as file:
        file.write(data)


def key_files():
    """Test-only private keys in each format SigningKey reads, written next to this script.
    rcgen (ring) cannot generate RSA keys, and writes only PKCS#8."""
    print("// key files written: rsa2048.pkcs1.pem rsa2048.pkcs8.pem p256.sec1.pem")
    print("//   p256.pkcs8.pem p384.sec1-no-public.pem p384.pkcs8.pem pss-cert.pem")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    write_pem("rsa2048.pkcs1.pem", private_pem(rsa_key, serialization.PrivateFormat.TraditionalOpenSSL))
    write_pem("rsa2048.pkcs8.pem", private_pem(rsa_key, serialization.PrivateFormat.PKCS8))

    p256 = ec.generate_private_key(ec.SECP256R1())
    write_pem("p256.sec1.pem", private_pem(p256, serialization.PrivateFormat.TraditionalOpenSSL))
    write_pem("p256.pkcs8.pem", private_pem(p256, serialization.PrivateFormat.PKCS8))

    # SEC1 ECPrivateKey { 1, privateKey, [0] secp384r1 } without the optional public key.
    p384 = ec.generate_private_key(ec.SECP384R1())
    scalar = p384.private_numbers().private_value.to_bytes(48, "big")
    sec1 = der(
        0x30,
        der(0x02, b"\x01") + der(0x04, scalar) + der(0xA0, der(0x06, bytes.fromhex("2b81040022"))),
    )
    body = base64.encodebytes(sec1).decode().replace("\n", "")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    text = "-----BEGIN EC PRIVATE KEY-----\n" + "\n".join(lines) + "\n-----END EC PRIVATE KEY-----\n"
    write_pem("p384.sec1-no-public.pem", text.encode())
    write_pem("p384.pkcs8.pem", private_pem(p384, serialization.PrivateFormat.PKCS8))
    return rsa_key


def private_pem(key, private_format):
    """TraditionalOpenSSL is PKCS#1 for RSA and SEC1 for EC keys."""
    return key.private_bytes(serialization.Encoding.PEM, private_format, serialization.NoEncryption())


def pss_vectors(key):
    print("// auth.rs (RSASSA-PSS) and certs.rs (CERTREQ), for pss-cert.pem (the RSA key)")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pss.example.net")])
    now = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(0x5157)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    write_pem("pss-cert.pem", cert.public_bytes(serialization.Encoding.PEM))
    # RFC 7427 AlgorithmIdentifier for RSASSA-PSS, SHA-256, MGF1-SHA-256, salt 32.
    sha256 = der(0x30, der(0x06, bytes.fromhex("608648016503040201")) + der(0x05, b""))
    mgf1 = der(0x30, der(0x06, bytes.fromhex("2a864886f70d010108")) + sha256)
    params = der(0x30, der(0xA0, sha256) + der(0xA1, mgf1) + der(0xA2, der(0x02, b"\x20")))
    algorithm = der(0x30, der(0x06, bytes.fromhex("2a864886f70d01010a")) + params)
    octets = b"IKE_AUTH signed octets for the RSASSA-PSS known answer"
    signature = key.sign(
        octets,
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
        hashes.SHA256(),
    )
    auth_data = bytes([len(algorithm)]) + algorithm + signature
    print(f'const PSS_OCTETS: &[u8] = b"{octets.decode()}";')
    rust_const("PSS_AUTH_DATA", auth_data)
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    rust_const("PSS_CERT_SPKI_SHA1", hashlib.sha1(spki).digest())


if __name__ == "__main__":
    keys_vectors()
    dh_vectors()
    auth_vectors()
    pss_vectors(key_files())
