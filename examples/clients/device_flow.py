"""A device without a browser (a TV, a command-line tool) signs a user in with the device
authorization grant (RFC 8628), with requests-oauth2client: it shows a code and a URL, the
user approves on another device, and it polls until then (at the interval the server asks).

    python device_flow.py --client-id tv
    (register it with: authledger client create --name "Living-room TV" --id tv --public
       --grant-type urn:ietf:params:oauth:grant-type:device_code --scope "openid read")"""

from requests_oauth2client import DeviceAuthorizationPoolingJob, OAuth2Client

from common import metadata, options, step


def main() -> None:
    p = options(__doc__.splitlines()[0], secret=False)
    p.add_argument("--scope", default="openid read")
    args = p.parse_args()
    meta = metadata(args.issuer)
    # The library insists on https endpoints; plain http is for a server on this machine.
    local = args.issuer.startswith(("http://127.0.0.1", "http://localhost", "http://[::1]"))
    client = OAuth2Client(token_endpoint=meta["token_endpoint"],
                          device_authorization_endpoint=meta["device_authorization_endpoint"],
                          client_id=args.client_id, testing=local)
    started = client.authorize_device(scope=args.scope)
    step("device", user_code=started.user_code, verification_uri=started.verification_uri,
         verification_uri_complete=started.verification_uri_complete, interval=started.interval,
         message=f"go to {started.verification_uri} and enter {started.user_code}")
    job = DeviceAuthorizationPoolingJob(client, started)
    token = None
    while token is None:
        token = job()
    step("done", token_type=token.token_type, scope=token.scope,
         has_id_token=token.id_token is not None)


if __name__ == "__main__":
    main()
