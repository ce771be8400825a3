"""silver's WSGI entry point, loaded by gunicorn from the node's system packages.

The release's own libraries are already on sys.path: silver's sitecustomize (silver_site.py,
beside this file) added them at start-up. This loads the runner file named by $SILVER_RUNNER and
moves the router's path prefix into SCRIPT_NAME.
"""

import importlib.util
import os
import sys

import sitecustomize  # noqa: F401  (silver_site.py: a no-op when Python already ran it)

_release = os.getcwd()
_runner = os.path.join(_release, os.environ["SILVER_RUNNER"])

for _dir in (os.path.dirname(_runner), _release):
    if _dir not in sys.path:
        sys.path.insert(0, _dir)

_spec = importlib.util.spec_from_file_location("silver_runner", _runner)
_module = importlib.util.module_from_spec(_spec)
sys.modules["silver_runner"] = _module
_spec.loader.exec_module(_module)
_app = getattr(_module, "application", None)
if _app is None:
    raise RuntimeError("runner %s defines no `application`" % os.environ["SILVER_RUNNER"])


def application(environ, start_response):
    # Set by the router, never by the client (the router strips X-Silver-* from requests).
    prefix = environ.pop("HTTP_X_SILVER_SCRIPT_NAME", "")
    if prefix:
        path = environ.get("PATH_INFO", "")
        if path == prefix or path.startswith(prefix + "/"):
            environ["PATH_INFO"] = path[len(prefix):]
        environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + prefix
    return _app(environ, start_response)
