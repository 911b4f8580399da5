"""Signed tokens for the RSA agreement test (rsa_agreement.rs).

Signs JWTs with Python's `cryptography` package (OpenSSL underneath), an
implementation independent of both Rulegate's and jwt-simple's, then spoils
copies of each signature in every way a verifier must notice. Prints one
JSON document: the keys as JWKs and, per case, the token and whether
`cryptography` itself accepts the signature.

Usage: rsa_cases.py ISSUER AUDIENCE EXPIRES
"""

import base64
import json
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

HASHES = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def uint(value, length):
    return value.to_bytes(length, "big")


def scheme(alg):
    digest = HASHES[alg[2:]]()
    if alg.startswith("PS"):
        return padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size), digest
    return padding.PKCS1v15(), digest


def accepted(public, alg, signature, message):
    pad, digest = scheme(alg)
    try:
        public.verify(signature, message, pad, digest)
        return True
    except (InvalidSignature, ValueError):
        return False


def main():
    issuer, audience, expires = sys.argv[1], sys.argv[2], int(sys.argv[3])
    keys = {
        "k2048": rsa.generate_private_key(65537, 2048),
        "k3072": rsa.generate_private_key(65537, 3072),
        "k4096": rsa.generate_private_key(65537, 4096),
        "other2048": rsa.generate_private_key(65537, 2048),
    }
    jwks = {}
    for kid, key in keys.items():
        numbers = key.public_key().public_numbers()
        size = (numbers.n.bit_length() + 7) // 8
        jwks[kid] = {
            "kty": "RSA",
            "kid": kid,
            "n": b64(uint(numbers.n, size)),
            "e": b64(uint(numbers.e, (numbers.e.bit_length() + 7) // 8)),
        }

    payload = b64(json.dumps({
        "iss": issuer, "sub": "user-1", "aud": audience,
        "iat": expires - 600, "exp": expires,
    }).encode())
    cases = []
    for kid in ["k2048", "k3072", "k4096"]:
        key = keys[kid]
        public = key.public_key()
        n = public.public_numbers().n
        size = (n.bit_length() + 7) // 8
        for alg in ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]:
            header = b64(json.dumps({"alg": alg, "kid": kid, "typ": "JWT"}).encode())
            message = f"{header}.{payload}".encode()
            pad, digest = scheme(alg)
            good = key.sign(message, pad, digest)
            s = int.from_bytes(good, "big")
            other = keys["other2048"].sign(message, pad, digest) if kid == "k2048" else None

            variants = {
                "valid": (message, good),
                "payload changed": (message[:-1] + bytes([message[-1] ^ 1]), good),
                "signature bit flipped": (message, bytes([good[0] ^ 0x01]) + good[1:]),
                "last signature bit flipped": (message, good[:-1] + bytes([good[-1] ^ 0x80])),
                "truncated": (message, good[:-1]),
                "over-long": (message, good + b"\x00"),
                "leading zero added": (message, b"\x00" + good),
                "zero": (message, bytes(size)),
                "one": (message, uint(1, size)),
                "modulus minus one": (message, uint(n - 1, size)),
                "modulus": (message, uint(n, size)),
                "empty": (message, b""),
            }
            if s + n < 1 << (8 * size):
                variants["signature plus modulus"] = (message, uint(s + n, size))
            if other is not None:
                variants["signed by another key"] = (message, other)
            for name, (signed, signature) in variants.items():
                cases.append({
                    "name": f"{kid} {alg} {name}",
                    "alg": alg,
                    "kid": kid,
                    "token": f"{signed.decode()}.{b64(signature)}",
                    "cryptography": accepted(public, alg, signature, signed),
                    "valid": name == "valid",
                })
    json.dump({"jwks": list(jwks.values()), "cases": cases}, sys.stdout)


main()
