"""A minimal headless-Chromium driver over the DevTools protocol.

Talks to the browser through ``--remote-debugging-pipe`` (file descriptors 3
and 4, NUL-separated JSON messages), so it needs nothing beyond the Python
standard library and a system ``chromium`` binary -- no websocket package, no
webdriver, no browser download.  Used by the viewer tests, the benchmark and
:func:`atlasjax.viewer.screenshot`.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import pathlib
import shutil
import subprocess
import tempfile
import threading
import time
from typing import Any, Callable

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome",
                       "google-chrome-stable")
ENV_VAR = "ATLASJAX_CHROMIUM"

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
    "--no-first-run", "--no-default-browser-check",
    "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--disable-extensions", "--disable-default-apps",
    "--mute-audio", "--hide-scrollbars", "--disable-dev-shm-usage",
    "--allow-file-access-from-files",
)


class BrowserError(RuntimeError):
  """Chromium is missing, died, or a DevTools command failed."""


def find_chromium(executable: str | None = None) -> str:
  """Path of a Chromium binary: ``executable``, ``$ATLASJAX_CHROMIUM`` or PATH."""
  for cand in (executable, os.environ.get(ENV_VAR)):
    if cand:
      path = shutil.which(cand)
      if not path:
        raise BrowserError(f"Chromium binary {cand!r} not found or not executable.")
      return path
  for name in CHROMIUM_CANDIDATES:
    path = shutil.which(name)
    if path:
      return path
  raise BrowserError(
      "No Chromium found on PATH (tried " + ", ".join(CHROMIUM_CANDIDATES) +
      f"). Install Debian's package (`apt-get install chromium`) or set "
      f"${ENV_VAR}; atlasjax never downloads a browser.")


class Browser:
  """One headless Chromium process with one page (tab).

  >>> with Browser() as b:
  ...   b.goto("file:///tmp/x/index.html")
  ...   b.evaluate("document.title")
  """

  def __init__(self, executable: str | None = None, width: int = 1280,
               height: int = 800, timeout: float = 30.0):
    self.timeout = timeout
    self.width, self.height = width, height
    exe = find_chromium(executable)
    self._profile = tempfile.mkdtemp(prefix="atlasjax-chromium-")
    # Chromium reads commands on fd 3 and writes replies on fd 4.  The pipe
    # ends are moved to fds >= 10 and mapped by a tiny `bash` wrapper (dash, so no
    # cannot name fds >= 10), so no preexec_fn (unsafe with threads) is needed.
    r, self._to_child = os.pipe()
    self._from_child, w = os.pipe()
    child_r = fcntl.fcntl(r, fcntl.F_DUPFD_CLOEXEC, 10)
    child_w = fcntl.fcntl(w, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(r)
    os.close(w)
    self._stderr = tempfile.TemporaryFile()
    args = [shutil.which("bash") or "/bin/bash", "-c",
            f'exec "$@" 3<&{child_r} 4>&{child_w} {child_r}<&- {child_w}>&-',
            "bash", exe, *CHROMIUM_FLAGS, "--remote-debugging-pipe",
            f"--user-data-dir={self._profile}",
            f"--window-size={width},{height}", "about:blank"]
    try:
      self._proc = subprocess.Popen(
          args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
          stderr=self._stderr, pass_fds=(child_r, child_w),
          start_new_session=True)
    finally:
      os.close(child_r)
      os.close(child_w)
    self._lock = threading.Condition()
    self._next_id = 0
    self._replies: dict[int, dict] = {}
    self._closed = False
    self.events: list[dict] = []
    self.console_errors: list[str] = []
    self.requests: list[str] = []
    self._reader = threading.Thread(target=self._read_loop, daemon=True)
    self._reader.start()
    try:
      self._open_page()
    except Exception:
      self.close()
      raise

  # -- protocol plumbing ---------------------------------------------------
  def _read_loop(self):
    buf = b""
    while True:
      try:
        chunk = os.read(self._from_child, 1 << 16)
      except OSError:
        chunk = b""
      if not chunk:
        break
      buf += chunk
      while b"\0" in buf:
        raw, buf = buf.split(b"\0", 1)
        msg = json.loads(raw)
        with self._lock:
          if "id" in msg:
            self._replies[msg["id"]] = msg
          else:
            self._on_event(msg)
          self._lock.notify_all()
    with self._lock:
      self._closed = True
      self._lock.notify_all()

  def _on_event(self, msg: dict):
    method, params = msg.get("method"), msg.get("params", {})
    self.events.append(msg)
    if method == "Runtime.consoleAPICalled" and params.get("type") in (
        "error", "assert"):
      text = " ".join(str(a.get("value", a.get("description", "")))
                      for a in params.get("args", []))
      self.console_errors.append(f"console.{params['type']}: {text}")
    elif method == "Runtime.exceptionThrown":
      d = params.get("exceptionDetails", {})
      desc = d.get("exception", {}).get("description") or d.get("text")
      self.console_errors.append(f"exception: {desc} ({d.get('url')}:"
                                 f"{d.get('lineNumber')})")
    elif method == "Log.entryAdded":
      e = params.get("entry", {})
      if e.get("level") == "error":
        self.console_errors.append(f"log: {e.get('text')} {e.get('url', '')}")
    elif method == "Network.requestWillBeSent":
      self.requests.append(params.get("request", {}).get("url", ""))

  def send(self, method: str, params: dict | None = None, *,
           session: bool = True, timeout: float | None = None) -> dict:
    """Sends one DevTools command and returns its result (raises on error)."""
    with self._lock:
      self._next_id += 1
      mid = self._next_id
    msg: dict[str, Any] = {"id": mid, "method": method, "params": params or {}}
    if session and getattr(self, "_session", None):
      msg["sessionId"] = self._session
    try:
      os.write(self._to_child, json.dumps(msg).encode() + b"\0")
    except OSError as e:
      raise BrowserError(f"Chromium pipe closed: {e}; {self._err_tail()}")
    deadline = time.monotonic() + (timeout or self.timeout)
    with self._lock:
      while mid not in self._replies:
        if self._closed:
          raise BrowserError(f"Chromium exited during {method}; "
                             f"{self._err_tail()}")
        left = deadline - time.monotonic()
        if left <= 0:
          raise BrowserError(f"DevTools command {method} timed out")
        self._lock.wait(left)
      reply = self._replies.pop(mid)
    if "error" in reply:
      raise BrowserError(f"{method}: {reply['error']}")
    return reply.get("result", {})

  def _err_tail(self) -> str:
    try:
      self._stderr.seek(0)
      return "stderr: " + self._stderr.read()[-2000:].decode(errors="replace")
    except (OSError, ValueError):
      return ""

  def _open_page(self):
    self._session = None
    target = self.send("Target.createTarget", {"url": "about:blank"},
                       session=False)["targetId"]
    self._session = self.send("Target.attachToTarget",
                              {"targetId": target, "flatten": True},
                              session=False)["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
      self.send(f"{domain}.enable")
    self.send("Emulation.setDeviceMetricsOverride", {
        "width": self.width, "height": self.height, "deviceScaleFactor": 1,
        "mobile": False})

  # -- page helpers --------------------------------------------------------
  def goto(self, url: str, wait_for: str | None = None, timeout: float = 20):
    """Navigates and waits for the load event (and ``wait_for`` JS if given)."""
    n = len(self.events)
    self.send("Page.navigate", {"url": url})
    self.wait_until(lambda: any(e.get("method") == "Page.loadEventFired"
                                for e in self.events[n:]), timeout,
                    f"load event of {url}")
    if wait_for:
      self.wait_for_js(wait_for, timeout)

  def evaluate(self, expression: str, await_promise: bool = False) -> Any:
    """Evaluates JS in the page and returns its JSON value."""
    res = self.send("Runtime.evaluate", {
        "expression": expression, "returnByValue": True,
        "awaitPromise": await_promise})
    if "exceptionDetails" in res:
      d = res["exceptionDetails"]
      raise BrowserError("JS error: " + str(
          d.get("exception", {}).get("description") or d.get("text")))
    return res.get("result", {}).get("value")

  def wait_until(self, predicate: Callable[[], Any], timeout: float = 20,
                 what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
      value = predicate()
      if value:
        return value
      if self._closed:
        raise BrowserError(f"Chromium exited while waiting for {what}; "
                           f"{self._err_tail()}")
      if time.monotonic() > deadline:
        raise BrowserError(f"timed out after {timeout}s waiting for {what}")
      time.sleep(0.05)

  def wait_for_js(self, expression: str, timeout: float = 20):
    return self.wait_until(lambda: self.evaluate(expression), timeout,
                           f"JS `{expression}`")

  def mouse(self, kind: str, x: float, y: float, **kw):
    """``kind``: mouseMoved, mousePressed, mouseReleased or mouseWheel."""
    params = {"type": kind, "x": x, "y": y, **kw}
    if kind in ("mousePressed", "mouseReleased"):
      params.setdefault("button", "left")
      params.setdefault("clickCount", 1)
    if kind == "mouseWheel":
      params.setdefault("deltaX", 0)
    self.send("Input.dispatchMouseEvent", params)

  def wheel(self, x: float, y: float, delta_y: float):
    self.mouse("mouseWheel", x, y, deltaY=delta_y)

  def key(self, key: str, code: str | None = None, key_code: int = 0):
    """Presses and releases one key (``key`` as in KeyboardEvent.key)."""
    base = {"key": key, "code": code or key, "windowsVirtualKeyCode": key_code}
    text = key if len(key) == 1 else ""
    self.send("Input.dispatchKeyEvent", {"type": "keyDown", "text": text, **base})
    self.send("Input.dispatchKeyEvent", {"type": "keyUp", **base})

  def type_text(self, text: str):
    self.send("Input.insertText", {"text": text})

  def screenshot(self, path: str | os.PathLike | None = None) -> bytes:
    data = base64.b64decode(self.send(
        "Page.captureScreenshot", {"format": "png"})["data"])
    if path is not None:
      pathlib.Path(path).write_bytes(data)
    return data

  def close(self):
    try:
      if self._proc.poll() is None:
        try:
          self.send("Browser.close", session=False, timeout=3)
        except BrowserError:
          pass
        try:
          self._proc.wait(5)
        except subprocess.TimeoutExpired:
          self._proc.kill()
          self._proc.wait(5)
    finally:
      for fd in (self._to_child, self._from_child):
        try:
          os.close(fd)
        except OSError:
          pass
      self._stderr.close()
      shutil.rmtree(self._profile, ignore_errors=True)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()
