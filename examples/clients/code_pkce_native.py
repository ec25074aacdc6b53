"""A native (desktop or command-line) application signs a user in as a public client: the
authorization code flow with PKCE and a loopback redirect on a port it picks (RFC 8252 7.3),
with Authlib's OAuth2Session. No secret: PKCE is its proof.

    python code_pkce_native.py --client-id desktop [--open-browser]
    (register it with: authledger client create --name desktop --id desktop --public
       --redirect-uri http://127.0.0.1/callback --grant-type authorization_code
       --grant-type refresh_token --scope "openid offline_access")"""

import secrets
import webbrowser

from authlib.integrations.requests_client import OAuth2Session

from common import Callback, metadata, options, step


def main() -> None:
    p = options(__doc__.splitlines()[0], secret=False)
    p.add_argument("--scope", default="openid offline_access")
    p.add_argument("--open-browser", action="store_true", help="open the system browser")
    args = p.parse_args()
    meta = metadata(args.issuer)
    callback = Callback()
    session = OAuth2Session(args.client_id, scope=args.scope, redirect_uri=callback.redirect_uri,
                            code_challenge_method="S256", token_endpoint_auth_method="none")
    verifier = secrets.token_urlsafe(48)
    url, state = session.create_authorization_url(meta["authorization_endpoint"],
                                                  code_verifier=verifier)
    step("authorize", url=url, message="sign in in the browser")
    if args.open_browser:
        webbrowser.open(url)
    returned = callback.wait()
    token = session.fetch_token(meta["token_endpoint"], authorization_response=returned,
                                code_verifier=verifier, state=state)
    step("done", token_type=token["token_type"], scope=token.get("scope"),
         expires_in=token.get("expires_in"), refresh_token=token.get("refresh_token"))


if __name__ == "__main__":
    main()
