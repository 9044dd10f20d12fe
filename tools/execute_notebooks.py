"""Re-execute notebooks in place and print a table: notebook, wall time, kernel peak memory, status.

    python tools/execute_notebooks.py notebooks/[0-9]*.ipynb

The peak memory is the kernel process's high-water mark of resident memory (VmHWM), read just
before the kernel shuts down. Exits non-zero if any notebook fails.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
from jupyter_core.utils import run_sync
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError


def _peak_rss_mib(pid: int) -> float:
    """Peak resident memory of a process in MiB (Linux VmHWM; 0 where unavailable)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def execute(path: Path, timeout: int = 900) -> tuple[float, float, str]:
    """Execute one notebook in its folder and save it with fresh outputs: (seconds, peak MiB, status)."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    status = "ok"
    start = time.perf_counter()
    try:
        client.execute(cleanup_kc=False)  # keep the kernel alive to read its peak memory
    except CellExecutionError as exc:
        status = f"FAILED: {str(exc).strip().splitlines()[-1][:80]}"
    finally:
        peak = _peak_rss_mib(client.km.provisioner.process.pid) if client.km and client.km.has_kernel else 0.0
        if client.km:
            run_sync(client.km.shutdown_kernel)(now=True)
    seconds = time.perf_counter() - start
    nbformat.write(nb, path)
    return seconds, peak, status


def main(paths: list[str]) -> int:
    if not paths:
        print(__doc__)
        return 2
    rows = []
    for p in map(Path, paths):
        print(f"executing {p} ...", flush=True)
        rows.append((p.name, *execute(p)))
    width = max(len(r[0]) for r in rows)
    print(f"\n| {'notebook':<{width}} | wall time | peak memory | status |")
    print(f"|{'-' * (width + 2)}|-----------|-------------|--------|")
    for name, seconds, peak, status in rows:
        print(f"| {name:<{width}} | {seconds:7.1f} s | {peak:7.0f} MiB | {status} |")
    return 0 if all(r[3] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
