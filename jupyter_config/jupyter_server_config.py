"""Jupyter server settings used by `make lab` (and copied into the environment by Binder's postBuild).

Security stays on: a random token is required (never set it to ''), XSRF checks stay on, and the
server listens on the loopback interface only. Binder overrides the address on its command line.

The server's landing page is notebook 00: the URL it prints (and opens in the browser) is
http://127.0.0.1:PORT/lab/tree/notebooks/00_welcome_and_setup.ipynb?token=…, and `/` redirects
there. The path is relative to the server's root folder, the repository (where `make lab` and
Binder start it). Binder's ?urlpath= in a badge link still takes precedence.
"""

c = get_config()  # noqa: F821  (provided by Jupyter when it loads this file)

c.ServerApp.ip = "127.0.0.1"
c.ServerApp.disable_check_xsrf = False
c.ServerApp.open_browser = True
LANDING_PAGE = "/lab/tree/notebooks/00_welcome_and_setup.ipynb"
# JupyterLab hands its own default_url ("/lab") to the server, so both are set.
c.ServerApp.default_url = LANDING_PAGE
c.LabApp.default_url = LANDING_PAGE
# Kernels that sit idle for an hour are stopped, so a forgotten tab does not hold memory.
c.MappingKernelManager.cull_idle_timeout = 3600
c.MappingKernelManager.cull_interval = 300
