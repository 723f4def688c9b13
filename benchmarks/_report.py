"""What the benchmarks share at the end: print the JSON report and keep a copy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from choral.atomic import atomic_write


def emit(report: dict[str, Any], out: str | None) -> None:
    """Print ``report`` as indented JSON, and write it to ``out`` (atomically) when given."""
    text = json.dumps(report, indent=1) + "\n"
    if out:
        atomic_write(out, lambda tmp: Path(tmp).write_text(text))
    print(text, end="")
