"""The Jupyter server configuration a notebook instance starts with (written into its run folder).

Jupyter's own token is off; requests are let in by Shipyard's signed tokens instead, checked by
the identity provider this file defines (it runs in the Jupyter server, which has no Shipyard to
import, so it is plain code with the notebook's key filled in):

* ``?shipyard_token=u.<url expiry>.<session expiry>.<signature>`` on any page: the link
  CreatePresignedNotebookInstanceUrl gives, good until its URL expiry (5 minutes), which sets a
  session cookie good until the session expiry (SessionExpirationDurationInSeconds);
* that cookie, ``s.<session expiry>.<signature>``;
* ``Authorization: Shipyard s.<expiry>.<signature>``: Shipyard's own calls (``/api/status``).

Signatures are HMAC-SHA256 with a key made for each run of the notebook, so a link or a cookie
ends with the run it was made for.
"""

from __future__ import annotations

TEMPLATE = '''
# Written by Shipyard for notebook instance {name!r} at each start; changes are overwritten.
import hashlib
import hmac
import time

from jupyter_server.auth.identity import IdentityProvider, User

_KEY = bytes.fromhex({key!r})
_COOKIE = "shipyard-notebook-{port}"


def _signed(text):
    return hmac.new(_KEY, text.encode(), hashlib.sha256).hexdigest()


def _session_end(value, *, link):
    """The session end (epoch seconds) a valid token gives; None when it is not valid now."""
    parts = value.split(".")
    now = time.time()
    try:
        if link and len(parts) == 4 and parts[0] == "u":
            url_end, session_end = int(parts[1]), int(parts[2])
            good = url_end > now
        elif not link and len(parts) == 3 and parts[0] == "s":
            session_end = int(parts[1])
            good = True
        else:
            return None
    except ValueError:
        return None
    body = ".".join(parts[:-1])
    if not (good and session_end > now and hmac.compare_digest(_signed(body), parts[-1])):
        return None
    return session_end


class ShipyardIdentity(IdentityProvider):
    """Lets in the holders of a Shipyard link, its session cookie, or Shipyard's own header."""

    @property
    def login_available(self):
        return False

    def get_user(self, handler):
        header = handler.request.headers.get("Authorization", "")
        user = User(username="ec2-user", name="ec2-user", display_name="ec2-user")
        if header.startswith("Shipyard ") and _session_end(header[9:], link=False):
            handler._token_authenticated = True
            return user
        link = handler.get_argument("shipyard_token", "")
        end = _session_end(link, link=True) if link else None
        if end is not None:
            session = "s.%d" % end
            handler.set_cookie(
                _COOKIE,
                session + "." + _signed(session),
                expires=end,
                path="/",
                httponly=True,
                samesite="Lax",
            )
            return user
        cookie = handler.get_cookie(_COOKIE) or ""
        if cookie and _session_end(cookie, link=False):
            return user
        return None


c = get_config()  # noqa: F821 (traitlets' config loader defines it)
c.ServerApp.identity_provider_class = ShipyardIdentity
c.IdentityProvider.token = ""
c.PasswordIdentityProvider.hashed_password = ""
c.ServerApp.ip = "127.0.0.1"
c.ServerApp.port = {port}
c.ServerApp.port_retries = 0
c.ServerApp.open_browser = False
c.ServerApp.allow_remote_access = False
c.ServerApp.root_dir = {root_dir!r}
c.ServerApp.terminado_settings = {{"shell_command": ["/bin/bash", "-l"]}}
'''


def jupyter_config(*, name: str, key: str, port: int, root_dir: str) -> str:
    """The configuration file's text for one run (``key``: the run's HMAC key, in hex)."""
    return TEMPLATE.format(name=name, key=key, port=port, root_dir=root_dir)


__all__ = ["jupyter_config"]
