"""silver's WSGI entry point, loaded by gunicorn from the node's system packages.

It puts the release's own libraries on sys.path (Silver Lining's lib/python, processing its .pth
files, and the site-packages of any virtualenv inside the release built for this Python), loads
the runner file named by $SILVER_RUNNER, and moves the router's path prefix into SCRIPT_NAME.
"""

import glob
import importlib.util
import os
import site
import sys

_release = os.getcwd()
_runner = os.path.join(_release, os.environ["SILVER_RUNNER"])
_version = "python%d.%d" % sys.version_info[:2]

_dirs = [os.path.join(_release, "lib", "python")]
_dirs += sorted(glob.glob(os.path.join(_release, "lib", _version, "site-packages")))
_dirs += sorted(glob.glob(os.path.join(_release, "*", "lib", _version, "site-packages")))
for _dir in _dirs:
    if os.path.isdir(_dir):
        site.addsitedir(_dir)
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
