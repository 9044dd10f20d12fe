"""Jupyter server settings used by `make lab` (and copied into the environment by Binder's postBuild).

Security stays on: a random token is required (never set it to ''), XSRF checks stay on, and the
server listens on the loopback interface only. Binder overrides the address on its command line.
"""

c = get_config()  # noqa: F821  (provided by Jupyter when it loads this file)

c.ServerApp.ip = "127.0.0.1"
c.ServerApp.disable_check_xsrf = False
c.ServerApp.open_browser = True
# Kernels that sit idle for an hour are stopped, so a forgotten tab does not hold memory.
c.MappingKernelManager.cull_idle_timeout = 3600
c.MappingKernelManager.cull_interval = 300
