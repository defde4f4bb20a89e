"""requests-oauthlib (Debian's python3-requests-oauthlib, on oauthlib), unmodified, against a running Gatehouse.

Run by test/interop/python.test.ts as `/usr/bin/python3 requests_oauthlib_client.py CONFIG_JSON`.
Prints one JSON object: per scenario {"token": …} as oauthlib parsed it, or {"error": …}. oauthlib
is strict here: OAUTHLIB_STRICT_TOKEN_TYPE=1 (token_type required) and no OAUTHLIB_RELAX_TOKEN_SCOPE
(a token response naming other scopes than those asked for is refused). http on loopback
needs OAUTHLIB_INSECURE_TRANSPORT=1. The test sets all three.

The scope goes on the oauthlib client (which puts it into the token request) and on the session
(which checks the response against it): requests-oauthlib 1.3 sends only the client's.
"""
import oauthlib
import requests_oauthlib
from oauthlib.oauth2 import BackendApplicationClient, LegacyApplicationClient
from requests.auth import HTTPBasicAuth
from requests_oauthlib import OAuth2Session
from harness import config, report, results, run, token_of

TOKEN_URL = config["token_url"]
USERINFO_URL = config["userinfo_url"]
machine = config["machine"]
first_party = config["first_party"]
user = config["user"]

results["library"] = {"name": "requests-oauthlib", "version": requests_oauthlib.__version__, "oauthlib": oauthlib.__version__}


# Client credentials: BackendApplicationClient. requests-oauthlib sends the secret in an HTTP Basic
# header by default (client_secret_basic), and in the body with include_client_id=True (client_secret_post).
def backend(include_client_id, secret=None, scope=("objects:read",)):
    def scenario():
        scopes = list(scope) if scope else None
        session = OAuth2Session(client=BackendApplicationClient(client_id=machine["id"], scope=scopes), scope=scopes)
        return token_of(session.fetch_token(
            token_url=TOKEN_URL, client_id=machine["id"], client_secret=secret or machine["secret"],
            include_client_id=include_client_id,
        ))
    return scenario


run("backend_client_secret_basic", backend(None))
run("backend_client_secret_post", backend(True))
run("backend_default_scope", backend(None, scope=None))
run("backend_wrong_secret_basic", backend(None, secret="gate_cs_wrong"))
run("backend_wrong_secret_post", backend(True, secret="gate_cs_wrong"))


# Resource owner password: LegacyApplicationClient, then the token at /userinfo and a refresh.
def legacy(include_client_id):
    def scenario():
        scope = ["openid", "email", "objects:read"]
        session = OAuth2Session(client=LegacyApplicationClient(client_id=first_party["id"], scope=scope), scope=scope)
        first = dict(session.fetch_token(
            token_url=TOKEN_URL, username=user["username"], password=user["password"],
            client_id=first_party["id"], client_secret=first_party["secret"], include_client_id=include_client_id,
        ))
        userinfo = session.get(USERINFO_URL).json()
        if include_client_id:
            refreshed = session.refresh_token(TOKEN_URL, refresh_token=first["refresh_token"], client_id=first_party["id"], client_secret=first_party["secret"])
        else:
            refreshed = session.refresh_token(TOKEN_URL, refresh_token=first["refresh_token"], auth=HTTPBasicAuth(first_party["id"], first_party["secret"]))
        userinfo_after_refresh = session.get(USERINFO_URL).json()
        replay = {}
        try:
            OAuth2Session(client=LegacyApplicationClient(client_id=first_party["id"], scope=scope), scope=scope).refresh_token(
                TOKEN_URL, refresh_token=first["refresh_token"], auth=HTTPBasicAuth(first_party["id"], first_party["secret"]))
            replay = {"unexpected": "the rotated-out refresh token was accepted"}
        except Exception as error:
            replay = {"error": getattr(error, "error", None), "exception": type(error).__name__}
        return {"first": first, "userinfo": userinfo, "refreshed": dict(refreshed), "userinfo_after_refresh": userinfo_after_refresh, "replay": replay}
    return scenario


run("legacy_client_secret_basic", legacy(None))
run("legacy_client_secret_post", legacy(True))


def legacy_wrong_password():
    session = OAuth2Session(client=LegacyApplicationClient(client_id=first_party["id"], scope=["objects:read"]), scope=["objects:read"])
    return token_of(session.fetch_token(token_url=TOKEN_URL, username=user["username"], password="not the password", client_id=first_party["id"], client_secret=first_party["secret"]))


run("legacy_wrong_password", legacy_wrong_password)

report()
