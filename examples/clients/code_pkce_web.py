"""A web application signs a user in with the authorization code flow and PKCE (RFC 7636),
as a confidential client (client_secret_basic), with Authlib's OAuth2Session; then reads
/userinfo. The redirect comes back to a loopback receiver standing in for the app's route.

    python code_pkce_web.py --client-id web --client-secret S
    (register it with: authledger client create --name web --id web --secret S
       --redirect-uri http://127.0.0.1/callback --grant-type authorization_code
       --grant-type refresh_token --scope "openid profile offline_access")"""

import secrets

from authlib.integrations.requests_client import OAuth2Session

from common import Callback, fail, metadata, options, step


def main() -> None:
    p = options(__doc__.splitlines()[0])
    p.add_argument("--scope", default="openid profile offline_access")
    args = p.parse_args()
    meta = metadata(args.issuer)
    callback = Callback()
    session = OAuth2Session(
        args.client_id, args.client_secret, scope=args.scope,
        redirect_uri=callback.redirect_uri, code_challenge_method="S256",
        token_endpoint_auth_method="client_secret_basic",
    )
    verifier = secrets.token_urlsafe(48)
    url, state = session.create_authorization_url(
        meta["authorization_endpoint"], code_verifier=verifier, nonce=secrets.token_urlsafe(16))
    step("authorize", url=url, message="open this URL in a browser and sign in")
    returned = callback.wait()
    token = session.fetch_token(meta["token_endpoint"], authorization_response=returned,
                                code_verifier=verifier, state=state)
    if "id_token" not in token:
        fail("the token response has no id_token")
    userinfo = session.get(meta["userinfo_endpoint"]).json()
    step("done", token_type=token["token_type"], scope=token.get("scope"),
         refresh_token=token.get("refresh_token"), userinfo=userinfo)


if __name__ == "__main__":
    main()
