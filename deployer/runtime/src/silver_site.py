"""silver's sitecustomize: every Python the app runs (gunicorn's workers, `[processes]`,
`update_fetch` scripts, `silver run`) sees the release's own libraries, as the WSGI shim does:
Silver Lining's lib/python with its .pth files, and the site-packages of a virtualenv inside the
release built for this Python. $SILVER_RELEASE_DIR names the release; PYTHONPATH names this
file's directory, so Python imports it at start-up.
"""

import glob
import os
import site
import sys

_release = os.environ.get("SILVER_RELEASE_DIR")
if _release:
    _version = "python%d.%d" % sys.version_info[:2]
    _dirs = [os.path.join(_release, "lib", "python")]
    _dirs += sorted(glob.glob(os.path.join(_release, "lib", _version, "site-packages")))
    _dirs += sorted(glob.glob(os.path.join(_release, "*", "lib", _version, "site-packages")))
    for _dir in _dirs:
        if os.path.isdir(_dir):
            site.addsitedir(_dir)
