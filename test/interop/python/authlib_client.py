"""authlib (Debian's python3-authlib), unmodified, against a running Gatehouse.

Run by test/interop/python.test.ts as `/usr/bin/python3 authlib_client.py CONFIG_JSON`. Every
scenario is reported, never raised: the script prints one JSON object whose values are either
{"token": …} (the token response as authlib parsed it) or {"error": …} (authlib's OAuthError), and
the test asserts on them. http on loopback needs AUTHLIB_INSECURE_TRANSPORT=1, which the test sets.
"""
import time

import authlib
from authlib.integrations.requests_client import OAuth2Session
from harness import config, report, results, run, token_of

TOKEN_URL = config["token_url"]
USERINFO_URL = config["userinfo_url"]
REVOCATION_URL = config["revocation_url"]
machine = config["machine"]
first_party = config["first_party"]
user = config["user"]

results["library"] = {"name": "authlib", "version": authlib.__version__}


def client_credentials(method):
    def scenario():
        session = OAuth2Session(machine["id"], machine["secret"], scope="objects:read", token_endpoint_auth_method=method)
        return token_of(session.fetch_token(TOKEN_URL, grant_type="client_credentials"))
    return scenario


for method in ("client_secret_basic", "client_secret_post"):
    run("client_credentials_" + method, client_credentials(method))
    # A client that does not ask for a scope gets its default scopes.
    run("client_credentials_default_scope_" + method, lambda method=method: token_of(
        OAuth2Session(machine["id"], machine["secret"], token_endpoint_auth_method=method).fetch_token(TOKEN_URL, grant_type="client_credentials")))
    run("client_credentials_wrong_secret_" + method, lambda method=method: token_of(
        OAuth2Session(machine["id"], "gate_cs_wrong", token_endpoint_auth_method=method).fetch_token(TOKEN_URL, grant_type="client_credentials")))


def password_then_refresh(method):
    """Password grant, the token used at /userinfo, refresh, then the rotated-out refresh token again."""
    def scenario():
        session = OAuth2Session(first_party["id"], first_party["secret"], scope="openid email objects:read", token_endpoint_auth_method=method)
        # authlib infers grant_type=password from username and password.
        first = dict(session.fetch_token(TOKEN_URL, username=user["username"], password=user["password"]))
        userinfo = session.get(USERINFO_URL).json()
        refreshed = dict(session.refresh_token(TOKEN_URL, refresh_token=first["refresh_token"]))
        userinfo_after_refresh = session.get(USERINFO_URL).json()
        replay = {}
        try:
            OAuth2Session(first_party["id"], first_party["secret"], token_endpoint_auth_method=method).refresh_token(TOKEN_URL, refresh_token=first["refresh_token"])
            replay = {"unexpected": "the rotated-out refresh token was accepted"}
        except Exception as error:
            replay = {"error": getattr(error, "error", None), "exception": type(error).__name__}
        return {"first": first, "userinfo": userinfo, "refreshed": refreshed, "userinfo_after_refresh": userinfo_after_refresh, "replay": replay}
    return scenario


for method in ("client_secret_basic", "client_secret_post"):
    run("password_refresh_" + method, password_then_refresh(method))


def password_wrong():
    session = OAuth2Session(first_party["id"], first_party["secret"], scope="objects:read")
    return token_of(session.fetch_token(TOKEN_URL, username=user["username"], password="not the password"))


run("password_wrong_password", password_wrong)


def automatic_refresh():
    """authlib refreshes an expired token by itself before a request, and reports the new one."""
    session = OAuth2Session(first_party["id"], first_party["secret"], scope="openid email objects:read")
    issued = dict(session.fetch_token(TOKEN_URL, username=user["username"], password=user["password"]))
    updates = []
    expired = dict(issued, expires_at=int(time.time()) - 60)
    later = OAuth2Session(
        first_party["id"], first_party["secret"], scope="openid email objects:read",
        token=expired, token_endpoint=TOKEN_URL,
        update_token=lambda token, refresh_token=None, access_token=None: updates.append(dict(token)),
    )
    userinfo = later.get(USERINFO_URL).json()
    return {"issued": issued, "updates": updates, "userinfo": userinfo}


run("automatic_refresh", automatic_refresh)


def revoke_then_refresh():
    """RFC 7009 through authlib's revoke_token; the revoked refresh token is then refused."""
    session = OAuth2Session(first_party["id"], first_party["secret"], scope="objects:read")
    issued = dict(session.fetch_token(TOKEN_URL, username=user["username"], password=user["password"]))
    response = session.revoke_token(REVOCATION_URL, token=issued["refresh_token"], token_type_hint="refresh_token")
    after = {}
    try:
        session.refresh_token(TOKEN_URL, refresh_token=issued["refresh_token"])
        after = {"unexpected": "the revoked refresh token was accepted"}
    except Exception as error:
        after = {"error": getattr(error, "error", None), "exception": type(error).__name__}
    return {"revocation_status": response.status_code, "refresh_after_revocation": after}


run("revoke_then_refresh", revoke_then_refresh)

report()
