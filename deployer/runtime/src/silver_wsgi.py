"""silver's WSGI entry point, loaded by gunicorn from the node's system packages.

The release's own libraries are already on sys.path: silver's sitecustomize (silver_site.py,
beside this file) added them at start-up. This loads the runner file named by $SILVER_RUNNER,
moves the router's path prefix into SCRIPT_NAME, and guards each worker as mod_wsgi's
request-timeout and uWSGI's harakiri and reload-on-rss do:

- a request running past $SILVER_REQUEST_TIMEOUT seconds (a busy loop, a lock taken twice)
  ends its worker at once, so gunicorn forks a fresh one; the router has answered the client
  with a 504 by then;
- a worker whose memory grows past $SILVER_MAX_MEMORY_MB is replaced after the request it is
  serving (a leak stays bounded).

Each replacement is logged with the request's method, path and time.
"""

import importlib.util
import os
import signal
import sys
import threading
import time

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


_timeout = float(os.environ.get("SILVER_REQUEST_TIMEOUT") or 0)
_max_rss = int(os.environ.get("SILVER_MAX_MEMORY_MB") or 0) << 20
_current = None  # (started, method, path) of the request this worker serves
_watching = None  # the pid whose watchdog runs: threads do not survive gunicorn's fork


def _log(message):
    sys.stderr.write("silver: %s\n" % message)
    sys.stderr.flush()


def _watchdog():
    # A Python busy loop still lets this thread run every few milliseconds (the GIL's switch
    # interval), and a thread blocked on a lock holds no GIL at all.
    while True:
        time.sleep(0.2)
        current = _current
        if current and time.monotonic() - current[0] > _timeout:
            _log("%s %s ran past request_timeout (%g s); replacing worker %d"
                 % (current[1], current[2], _timeout, os.getpid()))
            os._exit(75)


def _rss():
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


class _Tracked:
    """The app's response, which ends the request's watch when the server closes it."""

    def __init__(self, result, method, path):
        self._result, self._method, self._path = result, method, path

    def __iter__(self):
        return iter(self._result)

    def close(self):
        global _current
        try:
            if hasattr(self._result, "close"):
                self._result.close()
        finally:
            started = _current[0] if _current else time.monotonic()
            _current = None
            rss = _rss()
            if _max_rss and rss > _max_rss:
                _log("worker %d uses %d MiB, over max_memory (%d MiB), after %s %s (%.0f ms); replacing it"
                     % (os.getpid(), rss >> 20, _max_rss >> 20, self._method, self._path,
                        (time.monotonic() - started) * 1000))
                # gunicorn's graceful stop: this worker exits, the master forks a fresh one.
                os.kill(os.getpid(), signal.SIGTERM)


def application(environ, start_response):
    global _current, _watching
    if _timeout and _watching != os.getpid():
        _watching = os.getpid()
        threading.Thread(target=_watchdog, name="silver-watchdog", daemon=True).start()
    # Set by the router, never by the client (the router strips X-Silver-* from requests).
    prefix = environ.pop("HTTP_X_SILVER_SCRIPT_NAME", "")
    if prefix:
        path = environ.get("PATH_INFO", "")
        if path == prefix or path.startswith(prefix + "/"):
            environ["PATH_INFO"] = path[len(prefix):]
        environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + prefix
    method, path = environ.get("REQUEST_METHOD", "?"), environ.get("PATH_INFO", "")
    _current = (time.monotonic(), method, path)
    try:
        result = _app(environ, start_response)
    except BaseException:
        _current = None
        raise
    return _Tracked(result, method, path)
