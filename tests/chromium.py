"""A real headless Chromium for tests of the HTML that ``au-agent inspect`` writes: the page's DOM after its
script ran, a screenshot, and the console messages it produced. Standard library only."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

#: No network, no first-run or background work: the page is a local file and must need nothing else.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--enable-logging=stderr", "--v=0"]
_CONSOLE = re.compile(r":CONSOLE(?:\(\d+\))?[:\]]|Uncaught")


def find_chromium() -> Optional[str]:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None


def install_chromium() -> Tuple[Optional[str], str]:
    """Debian's ``chromium`` package, installed when missing and we may (root, apt-get); else why not."""
    found = find_chromium()
    if found:
        return found, ""
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return None, "chromium is not installed, and installing it needs root and apt-get"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
            if done.returncode != 0:
                return None, f"`{' '.join(cmd)}` failed: {done.stderr.strip().splitlines()[-1:]}"
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"installing chromium failed: {e}"
    found = find_chromium()
    return found, "" if found else "apt-get installed chromium but no chromium binary was found"


@dataclass
class PageRun:
    dom: str  # serialised DOM after the page's scripts ran
    console: List[str]  # console messages and uncaught errors, from Chromium's log


class Chromium:
    def __init__(self, binary: str) -> None:
        self.binary = binary

    def _run(self, page: Path, *extra: str, timeout: int = 90) -> subprocess.CompletedProcess:
        with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
            return subprocess.run([self.binary, *FLAGS, f"--user-data-dir={profile}", *extra,
                                   Path(page).absolute().as_uri()],
                                  capture_output=True, text=True, timeout=timeout)

    def load(self, page: Path) -> PageRun:
        done = self._run(page, "--dump-dom")
        assert done.returncode == 0, done.stderr[-2000:]
        return PageRun(done.stdout, [line for line in done.stderr.splitlines() if _CONSOLE.search(line)])

    def screenshot(self, page: Path, png: Path, width: int = 1400, height: int = 2000) -> PageRun:
        done = self._run(page, f"--screenshot={png}", f"--window-size={width},{height}")
        assert done.returncode == 0 and Path(png).is_file(), done.stderr[-2000:]
        return PageRun("", [line for line in done.stderr.splitlines() if _CONSOLE.search(line)])
