"""Silver Lining's `silversupport`, as much of it as apps import, so they run unchanged on silver.

- `silversupport.secret.get_secret()`: a secret string of this app on this node, made once by
  the agent and kept across releases (`run/silver-secret`, readable by the app's user alone);
- `silversupport.secret.get_key(name)`: a key for one purpose, derived from that secret, so
  rotating nothing by hand gives each use its own key;
- `silversupport.env.is_production()`: true on a node, false under `silver serve`
  (`$SILVER_VERSION` starts `silverlining/` on a node, `devel/` locally).

One file, which registers its submodules, because silver writes it into the app's `run/`
directory with an atomic rename and never creates directories the app could have planted.
"""

import hashlib
import hmac
import os
import sys
import types

__path__ = []  # a package: `import silversupport.secret` finds the submodule registered below

_SECRET_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "silver-secret")


def _get_secret():
    """The app's secret on this node (48 hex digits)."""
    with open(_SECRET_FILE) as f:
        return f.read().strip()


def _get_key(name):
    """A key for `name`, derived from the app's secret (HMAC-SHA256, hex)."""
    return hmac.new(_get_secret().encode(), name.encode(), hashlib.sha256).hexdigest()


def _is_production():
    return os.environ.get("SILVER_VERSION", "").startswith("silverlining/")


def _submodule(name, **attrs):
    module = types.ModuleType(__name__ + "." + name)
    module.__dict__.update(attrs)
    sys.modules[module.__name__] = module
    globals()[name] = module
    return module


_submodule("secret", get_secret=_get_secret, get_key=_get_key)
_submodule("env", is_production=_is_production)
