"""A partner trades a JWT its identity provider signed for an access token (the JWT bearer
assertion grant, RFC 7523), with Authlib's JWT encoder and OAuth2Session.

    python jwt_bearer.py --client-id partner --client-secret S --key partner.pem \
        --kid partner-1 --assertion-issuer https://idp.partner.example --subject alice@partner.example
    (make the key with: python keygen.py partner.pem partner-1 > partner-jwks.json, then
     authledger client create --name partner --id partner --secret S --scope read
       --grant-type urn:ietf:params:oauth:grant-type:jwt-bearer --jwks @partner-jwks.json
       --trusted-issuer https://idp.partner.example)"""

import time
import uuid

from authlib.integrations.requests_client import OAuth2Session
from authlib.jose import JsonWebToken

from common import metadata, options, step

GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def main() -> None:
    p = options(__doc__.splitlines()[0])
    p.add_argument("--key", required=True, help="the IdP's private key (PEM, P-256)")
    p.add_argument("--kid", required=True)
    p.add_argument("--assertion-issuer", required=True)
    p.add_argument("--subject", required=True)
    p.add_argument("--scope", default="read")
    args = p.parse_args()
    meta = metadata(args.issuer)
    now = int(time.time())
    claims = {"iss": args.assertion_issuer, "sub": args.subject, "aud": meta["token_endpoint"],
              "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())}
    with open(args.key, "rb") as f:
        key = f.read()
    assertion = JsonWebToken(["ES256"]).encode({"alg": "ES256", "kid": args.kid}, claims, key)
    session = OAuth2Session(args.client_id, args.client_secret, scope=args.scope,
                            token_endpoint_auth_method="client_secret_basic")
    token = session.fetch_token(meta["token_endpoint"], grant_type=GRANT,
                                assertion=assertion.decode())
    step("done", token_type=token["token_type"], scope=token.get("scope"),
         expires_in=token.get("expires_in"), access_token_is_jwt=token["access_token"].count(".") == 2)


if __name__ == "__main__":
    main()
