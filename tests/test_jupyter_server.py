"""The Jupyter settings of `make lab` (and Binder): token and XSRF on, loopback only, valid lab overrides.

One real `jupyter lab` is started from the venv with make lab's --config, on a free port and a
temporary root folder, and probed over HTTP. It is always stopped (module fixture, finally).
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "jupyter_config" / "jupyter_server_config.py"
OVERRIDES = ROOT / "jupyter_config" / "lab" / "overrides.json"
JUPYTER = Path(sys.executable).parent / "jupyter"
URL = re.compile(r"http://(?P<host>[^:/\s]+):(?P<port>\d+)(?P<path>/lab[^?\s]*)\?token=(?P<token>[0-9a-f]+)")
NOTEBOOK_00 = "notebooks/00_welcome_and_setup.ipynb"  # where a learner lands: `make lab` and Binder
LANDING_PAGE = f"/lab/tree/{NOTEBOOK_00}"


# --------------------------------------------------------------------------- the static files


def load_server_config():
    from traitlets.config.loader import PyFileConfigLoader

    return PyFileConfigLoader(CONFIG.name, path=str(CONFIG.parent)).load_config()


def test_server_config_keeps_security_on():
    config = load_server_config()
    for section in ("ServerApp", "NotebookApp", "IdentityProvider", "PasswordIdentityProvider"):
        settings = config.get(section, {})
        assert settings.get("token", None) != "", f"{section}.token must never be empty"
        assert settings.get("password", None) != "", f"{section}.password must never be empty"
        assert settings.get("disable_check_xsrf", False) is False, f"{section}.disable_check_xsrf must stay False"
        assert settings.get("allow_origin", "") != "*"
    assert config.ServerApp.ip == "127.0.0.1"


def test_server_config_lands_on_notebook_00():
    """The server's default URL (what it prints, opens and redirects `/` to) is notebook 00 in JupyterLab.

    JupyterLab passes its own default_url to the server, so the LabApp setting is the one that counts
    for `jupyter lab`; the ServerApp one covers servers started without JupyterLab as the starter app.
    """
    config = load_server_config()
    assert config.ServerApp.default_url == config.LabApp.default_url == LANDING_PAGE
    assert (ROOT / NOTEBOOK_00).is_file()  # relative to the server's root: the repository, where `make lab` runs


def test_make_lab_starts_jupyterlab_with_the_config_from_the_repository_root():
    recipe = re.search(r"^lab:.*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert recipe, "the Makefile has no lab: recipe"
    command = recipe.group(1)
    assert "jupyter lab" in command and "--config=jupyter_config/jupyter_server_config.py" in command
    assert "cd " not in command  # the server's root folder is the repository, so the landing page exists
    assert "default_url" not in command and "--LabApp" not in command  # the config alone decides the landing page


def test_postbuild_installs_the_same_server_config():
    text = (ROOT / "postBuild").read_text()
    assert "cp jupyter_config/jupyter_server_config.py" in text
    assert "cp jupyter_config/lab/overrides.json" in text


def lab_schema(plugin_id: str) -> dict:
    package, plugin = plugin_id.split(":")
    path = Path(sys.prefix) / "share" / "jupyter" / "lab" / "schemas" / package / f"{plugin}.json"
    assert path.is_file(), f"{plugin_id}: no such plugin in the installed JupyterLab ({path})"
    return json.loads(path.read_text())


def test_lab_overrides_are_valid_json_for_the_installed_schemas():
    import jsonschema

    overrides = json.loads(OVERRIDES.read_text())
    assert isinstance(overrides, dict) and overrides
    for plugin_id, settings in overrides.items():
        schema = lab_schema(plugin_id)
        unknown = set(settings) - set(schema.get("properties", {}))
        assert not unknown, f"{plugin_id}: {sorted(unknown)} are not settings of this plugin"
        # the values have the types and allowed values the schema asks for
        jsonschema.validate(settings, {k: v for k, v in schema.items() if k != "required"})


def test_lab_overrides_check_would_catch_a_typo():
    """Control for the test above: a misspelt key or a wrong value type is found."""
    import jsonschema

    schema = lab_schema("@jupyterlab/notebook-extension:tracker")
    assert "windowingMod" not in schema["properties"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"windowingMode": "sometimes"}, {k: v for k, v in schema.items() if k != "required"})


# --------------------------------------------------------------------------- a running server


@dataclass
class Server:
    base: str
    token: str
    port: int
    env: dict
    log: list[str] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab_root")
    (root / "hello.txt").write_text("hi")
    home = tmp_path_factory.mktemp("jupyter_home")
    # what `make setup` does: copy the overrides into the lab settings folder (here a private one)
    settings = home / "settings"
    settings.mkdir()
    shutil.copy(OVERRIDES, settings / "overrides.json")
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
           "JUPYTER_DATA_DIR": str(home / "data"), "JUPYTER_PLATFORM_DIRS": "0"}
    port = free_port()
    command = [str(JUPYTER), "lab", f"--config={CONFIG.relative_to(ROOT)}", "--no-browser", f"--port={port}",
               "--port-retries=0", f"--ServerApp.root_dir={root}", f"--LabApp.app_settings_dir={settings}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # containers run as root; a learner's machine does not need it
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    log: list[str] = []
    found: dict = {}
    ready = threading.Event()

    def read_output():
        for line in process.stdout:
            log.append(line)
            if not found and (match := URL.search(line)):
                found.update(match.groupdict())
                ready.set()
        ready.set()  # the server exited

    threading.Thread(target=read_output, daemon=True).start()
    try:
        ready.wait(60)
        assert found, "jupyter lab did not start:\n" + "".join(log[-30:])
        assert int(found["port"]) == port
        wait_until_listening(port, process, log)
        yield Server(f"http://{found['host']}:{port}", found["token"], port, env, log)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)


def wait_until_listening(port: int, process: subprocess.Popen, log: list[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, "jupyter lab exited:\n" + "".join(log[-30:])
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline, "jupyter lab printed its URL but does not accept connections"
            time.sleep(0.1)


def opener(cookies: http.cookiejar.CookieJar | None = None) -> urllib.request.OpenerDirector:
    handlers: list = [urllib.request.ProxyHandler({})]  # never through a proxy: this is loopback traffic
    if cookies is not None:
        handlers.append(urllib.request.HTTPCookieProcessor(cookies))
    return urllib.request.build_opener(*handlers)


def call(server: Server, path: str, *, method: str = "GET", token: str | None = None, headers: dict | None = None,
         body: dict | None = None, session: urllib.request.OpenerDirector | None = None) -> tuple[int, bytes]:
    headers = dict(headers or {})
    if token is not None:
        headers["Authorization"] = f"token {token}"
    data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
    request = urllib.request.Request(server.base + path, data=data, method=method, headers=headers)
    try:
        with (session or opener()).open(request, timeout=20) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_the_server_uses_a_long_random_token(server):
    assert len(server.token) >= 32
    assert URL.search("".join(server.log))["host"] == "127.0.0.1"


def test_the_printed_url_opens_notebook_00_with_the_token(server):
    printed = [match for line in server.log if (match := URL.search(line))]
    assert printed and {m["path"] for m in printed} == {LANDING_PAGE}  # every URL it prints
    assert {m["token"] for m in printed} == {server.token}
    status, body = call(server, f"{LANDING_PAGE}?token={server.token}")
    assert status == 200 and b"JupyterLab" in body
    status, location = redirect(server, LANDING_PAGE)  # without the token: to the login page, never the notebook
    assert status == 302 and urllib.parse.urlsplit(location).path == "/login"


def redirect(server: Server, path: str) -> tuple[int, str]:
    """The status and Location of ``path``'s answer, without following it."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({}), NoRedirect).open(server.base + path, timeout=20) as r:
            return r.status, ""
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Location", "")


def test_the_root_redirects_to_notebook_00(server):
    status, location = redirect(server, f"/?token={server.token}")
    assert status == 302 and urllib.parse.urlsplit(location).path == LANDING_PAGE


@pytest.mark.parametrize("path", ["/api/contents", "/api/kernels", "/api/sessions", "/api/terminals"])
def test_api_without_a_token_is_refused(server, path):
    assert call(server, path)[0] == 403
    assert call(server, path, token="0" * 48)[0] == 403  # a wrong token neither


def test_api_with_the_token_succeeds(server):
    status, body = call(server, "/api/contents", token=server.token)
    assert status == 200
    assert [item["name"] for item in json.loads(body)["content"]] == ["hello.txt"]  # served from the tmp root
    status, body = call(server, "/api/kernels", token=server.token)
    assert status == 200 and json.loads(body) == []
    assert call(server, f"/api/contents?token={server.token}")[0] == 200  # the token in the URL works too


def test_a_cookie_session_needs_the_xsrf_token_for_writes(server):
    cookies = http.cookiejar.CookieJar()
    session = opener(cookies)
    assert call(server, f"/lab?token={server.token}", session=session)[0] == 200  # logs in: sets the cookies
    names = {c.name for c in cookies}
    assert "_xsrf" in names and any(n.startswith("username-") for n in names)
    assert call(server, "/api/contents", session=session)[0] == 200  # reads work with the cookie alone
    # a write with the login cookie but without the XSRF token is refused (a forged cross-site request)
    assert call(server, "/api/contents", method="POST", body={"type": "file"}, session=session)[0] == 403
    assert call(server, "/api/kernels", method="POST", body={"name": "python3"}, session=session)[0] == 403
    assert call(server, "/api/kernels", token=server.token)[1] == b"[]"  # no kernel was started
    # the same write with the XSRF token (as JupyterLab sends it) goes through
    xsrf = next(c.value for c in cookies if c.name == "_xsrf")
    status, body = call(server, "/api/contents", method="POST", body={"type": "file"}, headers={"X-XSRFToken": xsrf},
                        session=session)
    assert status == 201 and json.loads(body)["type"] == "file"


def listening_addresses(port: int) -> set[str]:
    """Local addresses of the sockets listening on ``port``, from /proc/net/tcp and tcp6 (Linux)."""
    addresses = set()
    for name, family, words in (("tcp", socket.AF_INET, 1), ("tcp6", socket.AF_INET6, 4)):
        table = Path("/proc/net") / name
        if not table.exists():
            continue
        for line in table.read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port:  # 0A = LISTEN
                raw = struct.pack(f"={words}I", *(int(address[8 * i: 8 * i + 8], 16) for i in range(words)))
                addresses.add(socket.inet_ntop(family, raw))
    return addresses


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc/net")
def test_the_server_listens_on_loopback_only(server):
    assert listening_addresses(server.port) == {"127.0.0.1"}


def test_server_list_reports_the_same_secure_server(server):
    result = subprocess.run([str(JUPYTER), "server", "list", "--json"], env=server.env, capture_output=True, text=True,
                            timeout=60, check=True)
    running = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    ours = [s for s in running if s["port"] == server.port]
    assert len(ours) == 1
    assert ours[0]["hostname"] == "127.0.0.1" and ours[0]["token"] == server.token and ours[0]["password"] is False


def test_the_lab_overrides_reach_jupyterlab(server):
    """The overrides become the defaults JupyterLab serves for those plugins."""
    overrides = json.loads(OVERRIDES.read_text())
    for plugin_id, settings in overrides.items():
        status, body = call(server, f"/lab/api/settings/{plugin_id}", token=server.token)
        assert status == 200, plugin_id
        properties = json.loads(body)["schema"]["properties"]
        for key, value in settings.items():
            assert properties[key]["default"] == value, f"{plugin_id}:{key}"


def test_server_startup_was_clean(server):
    time.sleep(0.2)  # let the reader thread catch up with the log
    text = "".join(server.log)
    assert "[E " not in text and "Traceback" not in text, text[-3000:]
