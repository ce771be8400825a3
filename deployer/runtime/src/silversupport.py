"""Silver Lining's `silversupport`, as much of it as apps import, so they run unchanged on silver.

- `silversupport.secret.get_secret()`: a secret string of this app on this node, made once by
  the agent and kept across releases (`run/silver-secret`, readable by the app's user alone);
- `silversupport.secret.get_key(name)`: a key for one purpose, derived from that secret, so
  rotating nothing by hand gives each use its own key;
- `silversupport.env.is_production()`: true on a node, false under `silver serve`
  (`$SILVER_VERSION` starts `silverlining/` on a node, `devel/` locally);
- `silversupport.tasks.add(path, body=..., method="POST", delay=..., eta=..., key=...)`: queues
  a task, an internal request the node makes to the live release later, retried until it gets
  a 2xx; returns its id. Raises `silversupport.tasks.QueueFull` when the queue is full and
  `silversupport.tasks.TaskError` when the task is refused.

One file, which registers its submodules, because silver writes it into the app's `run/`
directory with an atomic rename and never creates directories the app could have planted.
"""

import base64
import datetime
import hashlib
import hmac
import http.client
import json
import os
import socket
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


class _TaskError(Exception):
    """The node refused the task: the message says why."""


class _QueueFull(_TaskError):
    """The app's queue holds `task_queue_size` tasks already; try again later."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self._socket_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._socket_path)


def _add_task(path, body=None, method="POST", delay=None, eta=None, key=None,
              content_type=None, timeout=30):
    """Queues a task for the node to run later: `method` `path` on the live release, with
    `body` (str or bytes). `delay` is in seconds (or a `timedelta`); `eta` is a `datetime`.
    A `key` makes a second add with the same key return the first task's id instead of
    queueing another. Returns the task's id once the task is stored durably."""
    task = {"path": path, "method": method}
    if isinstance(body, str):
        task["body"] = body
    elif body is not None:
        task["body_base64"] = base64.b64encode(bytes(body)).decode()
    if isinstance(delay, datetime.timedelta):
        delay = delay.total_seconds()
    if delay is not None:
        task["delay"] = delay
    if eta is not None:
        if eta.tzinfo is None:
            raise ValueError("eta must be an aware datetime (one with a tzinfo)")
        task["eta"] = eta.astimezone(datetime.timezone.utc).isoformat()
    if key is not None:
        task["key"] = key
    if content_type is not None:
        task["content_type"] = content_type
    where = os.environ.get("SILVER_TASKS_SOCKET") or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "tasks.sock")
    conn = _UnixConnection(where, timeout)
    try:
        conn.request("POST", "/tasks", json.dumps(task), {"Content-Type": "application/json"})
        answer = conn.getresponse()
        said = json.loads(answer.read() or b"{}")
    finally:
        conn.close()
    if answer.status in (200, 201):
        return said["id"]
    message = said.get("error") or "the node answered %d" % answer.status
    if said.get("hint"):
        message += "\nhint: " + said["hint"]
    raise (_QueueFull if answer.status == 429 else _TaskError)(message)


_submodule("secret", get_secret=_get_secret, get_key=_get_key)
_submodule("env", is_production=_is_production)
_submodule("tasks", add=_add_task, TaskError=_TaskError, QueueFull=_QueueFull)
