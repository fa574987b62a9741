"""A xapi (XenServer / XCP-ng) test server speaking real XML-RPC.

The unmodified ``XenAPI`` client from PyPI talks to it exactly as to a pool
master. See README.md in this directory for the supported messages, errors,
fault injection and the command line.

    from tests.xapiserver import XapiTestServer
    with XapiTestServer(pools=["pool1:root:secret"]) as srv:
        session = XenAPI.Session(srv.url)
        session.xenapi.login_with_password("root", "secret", "2.21", "tests")
"""

from __future__ import annotations

from .errors import XapiError
from .server import XapiTestServer, make_self_signed_cert
from .state import HostSpec, PoolSpec

__all__ = ["HostSpec", "PoolSpec", "XapiError", "XapiTestServer", "make_self_signed_cert"]
