"""Makes a P-256 key pair for the JWT samples: writes the private key (PEM, mode 0600) and
prints the public key as a JWKS to register with the client (--jwks @file).

    python keygen.py partner.pem partner-1 > partner-jwks.json"""

import base64
import json
import os
import sys

from authlib.jose import JsonWebKey


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit("usage: keygen.py PRIVATE.pem KID > jwks.json")
    path, kid = sys.argv[1], sys.argv[2]
    key = JsonWebKey.generate_key("EC", "P-256", is_private=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.as_pem(is_private=True))
    public = key.as_dict(is_private=False)
    # Authlib drops a coordinate's leading zero byte (about one key in 128); RFC 7518
    # section 6.2.1.2 wants the full 32 bytes, and authledger refuses the key otherwise.
    for coordinate in ("x", "y"):
        raw = base64.urlsafe_b64decode(public[coordinate] + "=" * (-len(public[coordinate]) % 4))
        public[coordinate] = base64.urlsafe_b64encode(raw.rjust(32, b"\0")).rstrip(b"=").decode()
    public.update({"kid": kid, "use": "sig", "alg": "ES256"})
    print(json.dumps({"keys": [public]}, indent=2))


if __name__ == "__main__":
    main()
