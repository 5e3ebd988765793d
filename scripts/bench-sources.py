#!/usr/bin/env python3
"""Helper of scripts/bench-sources.sh: the signed requests each contender sends, and a stand-in of
Plaid's key service.

  bench-sources.py key DIR                    # a P-256 key for the Plaid stand-in (DIR/plaid.pem)
  bench-sources.py keyserver DIR PORT         # serves DIR/plaid.pem's JWK at
                                              #   POST /webhook_verification_key/get
  bench-sources.py requests NAME DIR N RUN RECORDS OUT
                                              # N distinct signed requests of contender NAME

A request file has one request a line: `METHOD PATH<TAB>header: value<TAB>...<TAB>BODY`. Every
body is distinct (a counter and the run id) and about the same size for every contender, over
RECORDS records; each is signed as its sender signs it, now (Standard Webhooks' timestamp and
Plaid's `iat` must be within 5 minutes of the request, so files are made just before their run).
"""

import base64
import hashlib
import hmac
import http.server
import json
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

# The secrets of the bench's sources file (scripts/bench-sources.sh writes the same).
OKRA_SECRET = b"bench-okra-hmac"
MONO_SECRET = "bench-mono-secret"
PAYSTACK_SECRET = b"sk_test_bench"
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
PLAID_CLIENT_ID = "bench-client"
PLAID_SECRET = "bench-plaid-secret"
PLAID_KID = "bench-kid-1"
# Padding so that every contender's body is about the same size as Okra's.
FILLER = "Bench Bank production is_success CALLBACK"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def load_key(directory: str) -> ec.EllipticCurvePrivateKey:
    return serialization.load_pem_private_key(
        (Path(directory) / "plaid.pem").read_bytes(), password=None
    )


def make_key(directory: str) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (Path(directory) / "plaid.pem").write_bytes(pem)


def jwk(key: ec.EllipticCurvePrivateKey) -> dict:
    numbers = key.public_key().public_numbers()
    return {
        "alg": "ES256", "crv": "P-256", "kty": "EC", "use": "sig", "kid": PLAID_KID,
        "x": b64url(numbers.x.to_bytes(32, "big")),
        "y": b64url(numbers.y.to_bytes(32, "big")),
        "created_at": 1560466150, "expired_at": None,
    }


def keyserver(directory: str, port: int) -> None:
    answer = json.dumps({"key": jwk(load_key(directory)), "request_id": "bench"}).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (the stdlib's name)
            asked = json.loads(self.rfile.read(int(self.headers["content-length"])))
            known = (
                self.path == "/webhook_verification_key/get"
                and asked.get("client_id") == PLAID_CLIENT_ID
                and asked.get("secret") == PLAID_SECRET
                and asked.get("key_id") == PLAID_KID
            )
            body = answer if known else b'{"error_code":"INVALID_FIELD"}'
            self.send_response(200 if known else 400)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()


def hex_hmac(secret: bytes, body: bytes, digest) -> str:
    return hmac.new(secret, body, digest).hexdigest()


def request(name: str, n: int, run: str, records: int, now: int, plaid_key) -> str:
    record = f"rec_{n % records:05d}"
    nonce = f"{run}-{n}"
    if name == "okra":
        body = dumps({
            "callback_type": "TRANSACTIONS", "callback_code": "PERIODIC_TRANSACTIONS",
            "record": record, "type": "CALLBACK", "env": "production", "status": "is_success",
            "bankName": "Bench Bank", "new_transactions": n % 100, "nonce": nonce,
        })
        headers = {"X-Okra-Signature": "sha256=" + hex_hmac(OKRA_SECRET, body, hashlib.sha256)}
        return line("/v1/callback", headers, body)
    if name == "mono":
        body = dumps({"event": "mono.events.account_updated",
                      "data": {"account": {"_id": record}, "meta": {"data_status": "AVAILABLE"},
                               "nonce": nonce, "note": FILLER}})
        return line("/v1/sources/mono", {"mono-webhook-secret": MONO_SECRET}, body)
    if name == "paystack":
        body = dumps({"event": "charge.success",
                      "data": {"reference": nonce, "customer": {"customer_code": record},
                               "amount": 10000, "note": FILLER}})
        headers = {"x-paystack-signature": hex_hmac(PAYSTACK_SECRET, body, hashlib.sha512)}
        return line("/v1/sources/paystack", headers, body)
    if name == "standard-webhooks":
        body = dumps({"type": "payment", "timestamp": "2026-12-07T08:30:00.000Z",
                      "data": {"id": record, "nonce": nonce, "note": FILLER}})
        msg_id = f"msg_{nonce}"
        signed = f"{msg_id}.{now}.".encode() + body
        key = base64.b64decode(WHSEC.removeprefix("whsec_"))
        sig = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        headers = {"webhook-id": msg_id, "webhook-timestamp": str(now),
                   "webhook-signature": f"v1,{sig}"}
        return line("/v1/sources/stitch", headers, body)
    if name == "plaid":
        body = dumps({"webhook_type": "TRANSACTIONS", "webhook_code": "SYNC_UPDATES_AVAILABLE",
                      "item_id": record, "initial_update_complete": True,
                      "environment": "production", "nonce": nonce})
        header = b64url(dumps({"alg": "ES256", "kid": PLAID_KID, "typ": "JWT"}))
        claims = b64url(dumps({"iat": now, "request_body_sha256": hashlib.sha256(body).hexdigest()}))
        signing_input = f"{header}.{claims}".encode()
        r, s = decode_dss_signature(plaid_key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        jwt = f"{header}.{claims}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"
        return line("/v1/sources/plaid", {"plaid-verification": jwt}, body)
    raise SystemExit(f"unknown contender {name}")


def dumps(value) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def line(path: str, headers: dict, body: bytes) -> str:
    parts = [f"POST {path}"] + [f"{k}: {v}" for k, v in headers.items()] + [body.decode()]
    return "\t".join(parts)


def main() -> None:
    command = sys.argv[1]
    if command == "key":
        make_key(sys.argv[2])
    elif command == "keyserver":
        keyserver(sys.argv[2], int(sys.argv[3]))
    elif command == "requests":
        name, directory, n, run, records, out = sys.argv[2:8]
        plaid_key = load_key(directory) if name == "plaid" else None
        now = int(time.time())
        with open(out, "w") as f:
            for i in range(int(n)):
                f.write(request(name, i, run, int(records), now, plaid_key) + "\n")
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
