"""Fixtures of the browser tests: a JupyterLab server started as `make lab` starts it, and headless Chromium.

* ``lab``: one `jupyter lab` for the whole session, from `make lab`'s config
  (jupyter_config/jupyter_server_config.py), ``--no-browser``, on a free loopback port, with its
  own temporary Jupyter folders (so the notebooks are untrusted, as in a fresh clone), its own
  user settings (autosave off: the tracked notebooks are never rewritten) and its own workspaces.
  It serves the repository (or the folder named by ``COURSE_BROWSER_ROOT``, which must hold a
  ``notebooks/`` folder). Its sessions are deleted and it is stopped at the end.
* ``browser``: Debian's Chromium (``/usr/bin/chromium``, or ``$CHROMIUM``) driven by Playwright, headless.
* ``artifacts``: test-artifacts/browser/ (git-ignored): screenshots and latency.json.

Without Playwright or Chromium every browser test is skipped, with the reason.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "jupyter_config" / "jupyter_server_config.py"
JUPYTER = Path(sys.executable).parent / "jupyter"
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]  # fmt: skip
ARTIFACTS = ROOT / "test-artifacts" / "browser"
URL = re.compile(r"http://(?P<host>127\.0\.0\.1):(?P<port>\d+)(?P<path>/[^?\s]*)\?token=(?P<token>[0-9a-f]+)")


def _missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed: pip install -e '.[test]' (never `playwright install`: it uses Debian's Chromium)"
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        return f"no Chromium at {CHROMIUM}: apt-get install chromium (or set CHROMIUM to its path)"
    return None


def pytest_collection_modifyitems(config, items):
    reason = _missing()
    if reason:
        for item in items:
            if "browser" in getattr(item, "fixturenames", ()):
                item.add_marker(pytest.mark.skip(reason=reason))


@dataclass
class Lab:
    base: str  # http://127.0.0.1:PORT
    token: str
    root: Path  # the folder it serves
    printed_url: str  # the URL it printed (what `make lab` opens)
    log: list[str] = field(default_factory=list)

    def api(self, path: str, method: str = "GET") -> tuple[int, object]:
        request = urllib.request.Request(self.base + path, method=method, headers={"Authorization": f"token {self.token}"})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through a proxy
        try:
            with opener.open(request, timeout=30) as response:
                body = response.read()
                return response.status, json.loads(body) if body else None
        except urllib.error.HTTPError as error:
            return error.code, None

    def delete_sessions(self, path_suffix: str = "") -> None:
        """Delete the sessions (and so shut down the kernels) of the notebooks whose path ends with ``path_suffix``."""
        status, sessions = self.api("/api/sessions")
        for session in (sessions or []) if status == 200 else []:
            if session.get("path", "").endswith(path_suffix):
                self.api(f"/api/sessions/{session['id']}", method="DELETE")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    root = Path(os.environ.get("COURSE_BROWSER_ROOT", ROOT)).resolve()
    home = tmp_path_factory.mktemp("lab_home")
    user_settings = home / "user-settings"
    docmanager = user_settings / "@jupyterlab" / "docmanager-extension"
    docmanager.mkdir(parents=True)
    (docmanager / "plugin.jupyterlab-settings").write_text(json.dumps({"autosave": False}))
    # the server a learner starts with `make lab`: no test-run settings such as MPLBACKEND=Agg (with it the
    # kernels draw no inline figures) or the second nbval pass's forced kernels
    learner_env = {k: v for k, v in os.environ.items() if k not in ("MPLBACKEND", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "OMP_NUM_THREADS")}
    env = {
        **learner_env,
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTER_DATA_DIR": str(home / "data"),  # a fresh notebook-signing secret: every notebook is untrusted
        "JUPYTER_PLATFORM_DIRS": "0",
        "JUPYTERLAB_SETTINGS_DIR": str(user_settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
    }
    port = _free_port()
    command = [str(JUPYTER), "lab", f"--config={CONFIG}", "--no-browser", f"--port={port}", "--port-retries=0",
               f"--ServerApp.root_dir={root}"]  # fmt: skip
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    process = subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)  # fmt: skip
    log: list[str] = []
    found: dict = {}
    ready = threading.Event()

    def read_output():
        for line in process.stdout:
            log.append(line)
            if not found and (match := URL.search(line)):
                found.update(match.groupdict(), url=match.group(0))
                ready.set()
        ready.set()

    threading.Thread(target=read_output, daemon=True).start()
    server = None
    try:
        ready.wait(90)
        assert found, "jupyter lab did not start:\n" + "".join(log[-30:])
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, "jupyter lab exited:\n" + "".join(log[-30:])
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "jupyter lab does not accept connections"
                time.sleep(0.1)
        server = Lab(f"http://127.0.0.1:{port}", found["token"], root, found["url"], log)
        yield server
    finally:
        if server is not None:
            server.delete_sessions()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="session")
def artifacts():
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    return ARTIFACTS


@dataclass
class LatencyReport:
    updates: list[dict] = field(default_factory=list)  # one row per control moved
    run_all: dict[str, float] = field(default_factory=dict)  # notebook -> seconds of its Run All
    phases: dict[str, dict] = field(default_factory=dict)  # notebook -> seconds to open, run all, move the controls

    def summary(self) -> dict:
        from statistics import median

        per_dashboard: dict[str, list[float]] = {}
        for row in self.updates:
            per_dashboard.setdefault(f"{row['notebook']} · {row['dashboard']}", []).append(row["seconds"])
        return {
            "median_seconds_overall": round(median(r["seconds"] for r in self.updates), 3) if self.updates else None,
            "median_seconds_per_dashboard": {name: round(median(values), 3) for name, values in per_dashboard.items()},
            "run_all_seconds": self.run_all,
            "phase_seconds": self.phases,
            "updates": self.updates,
        }


@pytest.fixture(scope="session")
def latency_report(artifacts):
    """Collects each dashboard control's update latency; written to latency.json at the end of the session."""
    report = LatencyReport()
    yield report
    (artifacts / "latency.json").write_text(json.dumps(report.summary(), indent=2, ensure_ascii=False) + "\n")
