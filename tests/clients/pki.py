"""Test credentials, made fresh for each test run: a CA, a server certificate for 127.0.0.1,
client certificates carrying SPIFFE URI SANs, an RSA signing key published as a JWKS, and JWTs
(valid, expired, wrong issuer, without `sub`).

usage: pki.py OUT_DIR SPIFFE_ID... ; writes ca.pem, server.pem, server.key, client-N.pem/.key
(one per SPIFFE ID, in order), jwks.json and tokens.json into OUT_DIR.
"""

import datetime
import json
import sys
import time
from pathlib import Path

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ISSUER = "https://issuer.mcp-policy.test"
AUDIENCE = "mcp-servers"


def key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def certificate(subject_cn, key, issuer_name, issuer_key, sans, ca=False, usage=None):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)]))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def main(out: Path, spiffe_ids: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mcp-policy test CA")])
    ca = certificate("mcp-policy test CA", ca_key, ca_name, ca_key, None, ca=True)
    (out / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))

    import ipaddress
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = certificate("127.0.0.1", server_key, ca_name, ca_key,
                         [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")],
                         usage=ExtendedKeyUsageOID.SERVER_AUTH)
    (out / "server.pem").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    (out / "server.key").write_bytes(key_pem(server_key))

    for n, spiffe_id in enumerate(spiffe_ids):
        client_key = ec.generate_private_key(ec.SECP256R1())
        client = certificate(f"client-{n}", client_key, ca_name, ca_key,
                             [x509.UniformResourceIdentifier(spiffe_id)], usage=ExtendedKeyUsageOID.CLIENT_AUTH)
        (out / f"client-{n}.pem").write_bytes(client.public_bytes(serialization.Encoding.PEM))
        (out / f"client-{n}.key").write_bytes(key_pem(client_key))

    signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(signing_key.public_key()))
    jwk.update({"kid": "test-key", "alg": "RS256", "use": "sig"})
    (out / "jwks.json").write_text(json.dumps({"keys": [jwk]}))

    now = int(time.time())

    def token(claims):
        base = {"iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 3600}
        base.update(claims)
        base = {k: v for k, v in base.items() if v is not None}
        return jwt.encode(base, signing_key, algorithm="RS256", headers={"kid": "test-key"})

    tokens = {
        "alice": token({"sub": "alice"}),
        "dave": token({"sub": "dave"}),
        "bob": token({"sub": "bob"}),
        "carol": token({"sub": "carol"}),
        "expired": token({"sub": "alice", "iat": now - 7200, "exp": now - 3600}),
        "wrong_issuer": token({"sub": "alice", "iss": "https://evil.test"}),
        "no_sub": token({"sub": None, "client_id": "anonymous-app"}),
    }
    (out / "tokens.json").write_text(json.dumps(tokens))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
