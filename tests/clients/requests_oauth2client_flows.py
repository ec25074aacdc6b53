"""PAR, DPoP and token exchange with a real client library: requests-oauth2client.

Driven by tests/api/clients.rs against a server it started. Speaks JSON lines: it prints
{"step": "authorize", "url": ...} and reads back the callback URL the browser reached, then
prints one line per flow. Any failure raises, and the test sees a non-zero exit.

usage: requests_oauth2client_flows.py ISSUER WEB_ID WEB_SECRET GATEWAY_ID GATEWAY_SECRET AUDIENCE REDIRECT_URI
"""

import json
import sys

import requests
from requests_oauth2client import OAuth2Client


def say(**fields):
    print(json.dumps(fields), flush=True)


def main(issuer, web_id, web_secret, gateway_id, gateway_secret, audience, redirect_uri):
    web = OAuth2Client(
        token_endpoint=f"{issuer}/token",
        authorization_endpoint=f"{issuer}/authorize",
        pushed_authorization_request_endpoint=f"{issuer}/par",
        redirect_uri=redirect_uri,
        issuer=issuer,
        authorization_response_iss_parameter_supported=True,
        client_id=web_id,
        client_secret=web_secret,
        testing=True,
    )

    # PAR (RFC 9126): the request is pushed, the browser gets only its request_uri.
    request = web.authorization_request(scope="read", nonce=None)
    pushed = web.pushed_authorization_request(request)
    say(step="authorize", url=str(pushed.uri))
    callback = sys.stdin.readline().strip()
    response = request.validate_callback(callback)
    token = web.authorization_code(response)
    say(step="par", token_type=token.token_type, scope=token.scope, access_token=token.access_token)

    # DPoP (RFC 9449): a bound token, and a resource call with a proof for it.
    bound = web.client_credentials(scope="read", dpop=True)
    who = requests.get(f"{issuer}/api/whoami", auth=bound, timeout=20)
    say(step="dpop", token_type=bound.token_type, status=who.status_code, body=who.json())

    # Token exchange (RFC 8693): the gateway exchanges the user's token for the file service.
    gateway = OAuth2Client(
        token_endpoint=f"{issuer}/token",
        client_id=gateway_id,
        client_secret=gateway_secret,
        testing=True,
    )
    exchanged = gateway.token_exchange(
        subject_token=token.access_token,
        subject_token_type="urn:ietf:params:oauth:token-type:access_token",
        audience=audience,
    )
    say(step="exchange", scope=exchanged.scope, access_token=exchanged.access_token)


if __name__ == "__main__":
    main(*sys.argv[1:8])
