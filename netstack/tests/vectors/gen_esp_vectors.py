#!/usr/bin/env python3
"""Known-answer ESP packets for netstack/src/ipsec/esp.rs, built independently of Siteward
with Python `cryptography`: one AES-256-GCM-16 packet (RFC 4106; the IV is the 64-bit
sequence number, as Siteward sends it) and one AES-256-CBC + HMAC-SHA-256-128 packet
(RFC 3602, RFC 4868; fixed IV). Prints the Rust constants pasted into esp.rs's tests.

    python3 netstack/tests/vectors/gen_esp_vectors.py
"""
import hashlib
import hmac
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

GCM_KEY = bytes(range(0x00, 0x20))
GCM_SALT = bytes.fromhex("a1b2c3d4")
CBC_KEY = bytes(range(0x40, 0x60))
CBC_INTEG_KEY = bytes(range(0x80, 0xA0))
CBC_IV = bytes.fromhex("00112233445566778899aabbccddeeff")
SPI = 0x0A0B0C0D
SEQ = 0x2A
NEXT_HEADER_IPV4 = 4


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def inner_packet() -> bytes:
    """An ICMP echo request 192.0.2.1 -> 198.51.100.1 of 39 bytes (so padding is needed)."""
    payload = b"siteward-e!"
    icmp = struct.pack("!BBHHH", 8, 0, 0, 0x1234, 1) + payload
    icmp = icmp[:2] + struct.pack("!H", checksum(icmp)) + icmp[4:]
    total_len = 20 + len(icmp)
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, total_len, 0x0001, 0, 64, 1, 0,
        bytes([192, 0, 2, 1]), bytes([198, 51, 100, 1]),
    )
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return ip + icmp


def trailer(inner_len: int, align: int) -> bytes:
    pad_len = (-(inner_len + 2)) % align
    return bytes(range(1, pad_len + 1)) + bytes([pad_len, NEXT_HEADER_IPV4])


def gcm_packet(inner: bytes) -> bytes:
    header = struct.pack("!II", SPI, SEQ)
    iv = struct.pack("!Q", SEQ)
    plaintext = inner + trailer(len(inner), 4)
    sealed = AESGCM(GCM_KEY).encrypt(GCM_SALT + iv, plaintext, header)  # ciphertext | tag
    return header + iv + sealed


def cbc_packet(inner: bytes) -> bytes:
    header = struct.pack("!II", SPI, SEQ)
    plaintext = inner + trailer(len(inner), 16)
    encryptor = Cipher(algorithms.AES(CBC_KEY), modes.CBC(CBC_IV)).encryptor()
    ciphertext = encryptor.update(plaintext) + encryptor.finalize()
    icv = hmac.new(CBC_INTEG_KEY, header + CBC_IV + ciphertext, hashlib.sha256).digest()[:16]
    return header + CBC_IV + ciphertext + icv


def main() -> None:
    inner = inner_packet()
    for name, value in [
        ("INNER", inner),
        ("GCM_PACKET", gcm_packet(inner)),
        ("CBC_PACKET", cbc_packet(inner)),
    ]:
        print(f'const {name}: &str = "{value.hex()}";')


if __name__ == "__main__":
    main()
