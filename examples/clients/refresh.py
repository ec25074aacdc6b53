"""An application renews its access token with a refresh token (RFC 6749 6) with Authlib's
OAuth2Session; the server rotates refresh tokens, so the new one replaces the old.

    python refresh.py --client-id web --client-secret S --refresh-token R
    python refresh.py --client-id desktop --refresh-token R      (a public client)"""

from authlib.integrations.requests_client import OAuth2Session

from common import metadata, options, step


def main() -> None:
    p = options(__doc__.splitlines()[0])
    p.add_argument("--refresh-token", required=True)
    args = p.parse_args()
    meta = metadata(args.issuer)
    method = "client_secret_basic" if args.client_secret else "none"
    session = OAuth2Session(args.client_id, args.client_secret, token_endpoint_auth_method=method)
    token = session.refresh_token(meta["token_endpoint"], refresh_token=args.refresh_token)
    step("done", token_type=token["token_type"], scope=token.get("scope"),
         refresh_token=token.get("refresh_token"),
         rotated=token.get("refresh_token") != args.refresh_token)


if __name__ == "__main__":
    main()
