"""A service gets a token for itself (client_credentials, RFC 6749 4.4) with Authlib's
OAuth2Session, then calls the server's demo resource /api/whoami with it.

    python client_credentials.py --client-id billing --client-secret S [--scope read]
    (register it with: authledger client create --name billing --id billing --secret S
       --grant-type client_credentials --scope read)"""

from authlib.integrations.requests_client import OAuth2Session

from common import metadata, options, step


def main() -> None:
    p = options(__doc__.splitlines()[0])
    p.add_argument("--scope", default=None)
    args = p.parse_args()
    meta = metadata(args.issuer)
    session = OAuth2Session(args.client_id, args.client_secret, scope=args.scope,
                            token_endpoint_auth_method="client_secret_basic")
    token = session.fetch_token(meta["token_endpoint"], grant_type="client_credentials")
    whoami = session.get(args.issuer.rstrip("/") + "/api/whoami")
    whoami.raise_for_status()
    step("done", token_type=token["token_type"], scope=token.get("scope"),
         expires_in=token.get("expires_in"), whoami=whoami.json())


if __name__ == "__main__":
    main()
