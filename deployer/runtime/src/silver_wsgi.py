"""silver's WSGI entry point, loaded by gunicorn from the node's system packages.

The release's own libraries are already on sys.path: silver's sitecustomize (silver_site.py,
beside this file) added them at start-up. This loads the runner file named by $SILVER_RUNNER,
moves the router's path prefix into SCRIPT_NAME, and guards each worker as mod_wsgi's
request-timeout and uWSGI's harakiri and reload-on-rss do:

- a request running past $SILVER_REQUEST_TIMEOUT seconds (a busy loop, a lock taken twice)
  ends its worker at once, so gunicorn forks a fresh one; the router has answered the client
  with a 504 by then;
- a request whose client has gone (the router closed its connection: the client hung up, or
  its deadline passed, or the router ended it while others waited) and that has run past
  50 ms is stopped: an exception is raised in it, as PHP stops a script at its time limit,
  and the worker serves on; one blocked in C (it used almost no CPU), or still running 50 ms
  later, ends its worker.
  Nobody will read its answer, and a wedged request would otherwise hold the worker until the
  deadline: Heroku's H12 answers the client but leaves the dyno stuck, and 1% of requests
  wedging would take the whole pool;
- a request gives way to shorter ones as it computes, as a kernel's scheduler favours
  interactive tasks: past 2 ms of CPU time at nice 10, past 5 ms at the lowest priority
  (nice 19), back to 0 when it ends. A busy loop then takes the CPU only when healthy requests
  leave it. CPU time, not time run: under load a quick request waits for a core longer than a
  busy loop needs to burn one.
  Where the worker may not raise a priority back (RLIMIT_NICE, which the agent sets as root
  when it may), the app is called on a thread of its own, and a thread that gave way retires
  after its request;
- a worker whose memory grows past $SILVER_MAX_MEMORY_MB is replaced after the request it is
  serving (a leak stays bounded).

Each replacement is logged with the request's method, path and time.
"""

import ctypes
import errno
import importlib.util
import os
import queue
import resource
import select
import signal
import sys
import threading
import time

import sitecustomize  # noqa: F401  (silver_site.py: a no-op when Python already ran it)

try:
    import silver_gunicorn as _board  # the master's board of requests in flight
except ImportError:  # run by something other than silver's gunicorn
    _board = None

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
_ROUTER_LEAD = 0.1
_max_rss = int(os.environ.get("SILVER_MAX_MEMORY_MB") or 0) << 20
# As long as the router's pool sizer waits before it counts a request as stuck.
_ABANDON_AFTER = 0.05
_current = None  # (started, method, path, socket, CPU time then) of the request served
# (seconds of CPU time, nice value), in order: a request that computes gives way to short ones.
_GIVE_WAY = ((0.002, 10), (0.005, 19))
# Set when a request starts: the watchdog sleeps on it between requests and ticks during one.
_wake = threading.Event()
_TICK = 0.005
# Lowering a thread's priority is allowed to anyone; raising it back only up to RLIMIT_NICE.
_can_restore = resource.getrlimit(resource.RLIMIT_NICE)[0] >= 20
_nice = 0  # the request thread's nice value
_request_thread = None  # the native id of the thread the app is called on
_request_clock = None  # that thread's CPU-time clock
_request_ident = None  # and its Python thread id, for raising in it
_stopping = None  # (request, when) being stopped: the request ends, or the worker is replaced
_STOP_GRACE = 0.05
# A request that has used less CPU than this by the time it is stopped is blocked, not busy.
_BLOCKED_BELOW = 0.001
_caller = None  # the _Caller that thread belongs to, when priorities cannot be restored
_watching = None  # the pid whose watchdog runs: threads do not survive gunicorn's fork


def _log(message):
    sys.stderr.write("silver: %s\n" % message)
    sys.stderr.flush()


def _watchdog():
    # A Python busy loop still lets this thread run every few milliseconds (the GIL's switch
    # interval), and a thread blocked on a lock holds no GIL at all.
    while True:
        current = _current
        if not current:
            _wake.wait()
            _wake.clear()
            continue
        time.sleep(_TICK)
        current = _current
        if not current:
            continue
        ran = time.monotonic() - current[0]
        _give_way(current, _cpu_time() - current[4])
        if _timeout and ran > _timeout:
            _replace(current, "ran past request_timeout (%g s)" % _timeout)
        if ran > _ABANDON_AFTER and _client_gone(current[3]):
            if _timeout and ran > _timeout - _ROUTER_LEAD:
                # The router's clock starts when it sends the request, a moment before ours:
                # a hang-up this close to the deadline is its 504.
                _replace(current, "ran past request_timeout (%g s)" % _timeout)
            else:
                _stop(current, "was abandoned by its client after %.0f ms" % (ran * 1000))


def _stop(current, why):
    """Ends a request nobody waits for: first as Python ends a thread's work from outside, an
    exception raised at its next bytecode (the worker and its imports stay), then, if it is
    still running _STOP_GRACE later, by replacing the worker. One that has used almost no CPU
    is blocked in C (a lock taken twice, a sleep), where no exception reaches it: its worker
    is replaced at once."""
    global _stopping
    if _cpu_time() - current[4] < _BLOCKED_BELOW:
        # Blocked in C all along (a lock taken twice, a sleep): no exception would reach it.
        _replace(current, why)
    elif _stopping is None or _stopping[0] is not current:
        _stopping = (current, time.monotonic())
        _log("%s %s %s; stopping it" % (current[1], current[2], why))
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(_request_ident), ctypes.py_object(_Abandoned))
    elif time.monotonic() - _stopping[1] > _STOP_GRACE:
        _replace(current, "did not stop")


class AppError(Exception):
    """An `OSError` the app raised, carried to gunicorn as an error of the app's (a 500)."""


class _Abandoned(BaseException):
    """Raised in a request whose client has gone (not an Exception: `except Exception` in the
    app lets it through)."""


def _client_gone(sock):
    """Whether the router closed the request's connection. It sends the whole request first and
    never half-closes, so a hang-up here means nobody is waiting for the answer."""
    if sock is None:
        return False
    try:
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLRDHUP | select.POLLHUP | select.POLLERR)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return False  # the socket closed under us: the request is over


def _request_done():
    global _current, _caller, _nice
    _current = None
    if _board:
        _board.clear(os.getpid())
    if not _nice:
        return
    if _can_restore:
        _set_priority(0)
    else:
        _caller.retire()
        _caller, _nice = None, 0


class _Caller:
    """A thread that makes the app's calls, so the one that gave way can retire."""

    def __init__(self):
        self._jobs = queue.SimpleQueue()
        self._retired = False
        started = threading.Event()
        threading.Thread(target=self._run, args=(started,), name="silver-request",
                         daemon=True).start()
        started.wait()

    def _run(self, started):
        _serve_on_this_thread()
        started.set()
        while not self._retired:
            self._jobs.get()()

    def call(self, fn, *args):
        box, done = {}, threading.Event()

        def job():
            try:
                box["value"] = fn(*args)
            except BaseException as e:  # handed to gunicorn's thread, as if raised there
                box["error"] = e
            finally:
                done.set()

        self._jobs.put(job)
        done.wait()
        if "error" in box:
            raise box["error"]
        return box["value"]

    def retire(self):
        self._retired = True
        self._jobs.put(lambda: None)  # wakes it, if it already waits for the next job


def _cpu_time():
    return time.clock_gettime(_request_clock)


def _serve_on_this_thread():
    global _request_thread, _request_clock, _request_ident
    _request_thread = threading.get_native_id()
    _request_ident = threading.get_ident()
    _request_clock = time.pthread_getcpuclockid(threading.get_ident())


def _give_way(current, used):
    wanted = max((nice for after, nice in _GIVE_WAY if used > after), default=0)
    if wanted > _nice and _current is current:
        _set_priority(wanted)


def _set_priority(nice):
    """Linux nice values belong to threads: this changes the one serving requests only."""
    global _nice
    try:
        os.setpriority(os.PRIO_PROCESS, _request_thread, nice)
        _nice = nice
    except OSError:
        pass


def _replace(current, why):
    if _current is not current:
        return  # it finished meanwhile
    _log("%s %s %s; replacing worker %d" % (current[1], current[2], why, os.getpid()))
    if _board:
        _board.clear(os.getpid())  # said here: the master need not say it again
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
            _request_done()
            rss = _rss()
            if _max_rss and rss > _max_rss:
                _log("worker %d uses %d MiB, over max_memory (%d MiB), after %s %s (%.0f ms); replacing it"
                     % (os.getpid(), rss >> 20, _max_rss >> 20, self._method, self._path,
                        (time.monotonic() - started) * 1000))
                # gunicorn's graceful stop: this worker exits, the master forks a fresh one.
                os.kill(os.getpid(), signal.SIGTERM)


def application(environ, start_response):
    global _current, _watching, _caller
    if _watching != os.getpid():
        _watching = os.getpid()
        _serve_on_this_thread()
        threading.Thread(target=_watchdog, name="silver-watchdog", daemon=True).start()
    if not _can_restore and _caller is None:
        _caller = _Caller()
    # Set by the router or the node, never by a client (the router strips X-Silver-*).
    internal = environ.pop("HTTP_X_SILVER_INTERNAL", "")
    if internal:
        # Silver Lining's flags for the node's own requests: update_fetch and health checks.
        environ["silverlining.internal"] = True
        if internal == "update":
            environ["silverlining.update"] = True
    # A [cron] job's request: the job's name (as App Engine's X-Appengine-Cron says a request
    # is cron's, which no client can forge either).
    cron = environ.pop("HTTP_X_SILVER_CRON", "")
    tick = environ.pop("HTTP_X_SILVER_CRON_TICK", "")
    if cron and internal == "cron":
        environ["silver.cron"] = cron
        environ["silver.cron_tick"] = tick
    # A queued task's request: its id and which attempt this is (1 for the first).
    task = environ.pop("HTTP_X_SILVER_TASK", "")
    attempt = environ.pop("HTTP_X_SILVER_TASK_ATTEMPT", "")
    if task and internal == "task":
        environ["silver.task"] = task
        environ["silver.task_attempt"] = int(attempt or "1")
    prefix = environ.pop("HTTP_X_SILVER_SCRIPT_NAME", "")
    if prefix:
        path = environ.get("PATH_INFO", "")
        if path == prefix or path.startswith(prefix + "/"):
            environ["PATH_INFO"] = path[len(prefix):]
        environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + prefix
    method, path = environ.get("REQUEST_METHOD", "?"), environ.get("PATH_INFO", "")
    _current = (time.monotonic(), method, path, environ.get("gunicorn.socket"), _cpu_time())
    _wake.set()
    if _board:
        _board.mark(os.getpid(), method, path)
    try:
        if _caller is None:
            result = _app(environ, start_response)
        else:
            result = _caller.call(_app, environ, start_response)
    except _Abandoned:
        # Stopped: nobody reads this answer; the worker serves the next request.
        _request_done()
        start_response("503 Service Unavailable", [("Content-Length", "0")], sys.exc_info())
        return []
    except OSError as e:
        _request_done()
        if e.errno in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
            raise  # the client's socket: gunicorn hangs up quietly, rightly
        # gunicorn takes any other OSError for its socket's and hangs up without an answer;
        # the app's own (a file it may not open) is a 500, as any other exception is.
        raise AppError("%s: %s" % (type(e).__name__, e)) from e
    except BaseException:
        _request_done()
        raise
    return _Tracked(result, method, path)
