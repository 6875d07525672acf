"""The examples in examples/ run as documented and do what they say."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_custom_parts_evolves_in_process_with_plain_functions() -> None:
    done = subprocess.run([sys.executable, str(EXAMPLES / "custom_parts.py")],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "stopped: reached max_programs" in done.stdout
    score = float(re.search(r"best score (\S+)", done.stdout).group(1))
    assert -0.01 < score <= 0.0  # from -9 at X = 0 to nearly X = 3
    assert len((EXAMPLES / "custom_parts.py").read_text().splitlines()) < 60
