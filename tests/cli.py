"""Running the `chainmail` command as an operator would: a subprocess on a given database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def chainmail(
    db_url: str, *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    # LOG_LEVEL=WARNING: stderr then holds only what the command itself says.
    environment = {
        **os.environ,
        "DATABASE_URL": db_url,
        "PYTHONPATH": str(ROOT),
        "LOG_LEVEL": "WARNING",
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        env=environment,
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
    )
