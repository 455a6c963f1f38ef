"""Rewrite one marked section of a Markdown document (used by the benchmarks' --write)."""

from __future__ import annotations

from pathlib import Path


def write_section(path: Path, start: str, end: str, heading: str, text: str) -> None:
    """Replace the text between the `start`/`end` markers of `path` with `text` (which carries
    the markers), or append it under `## heading` if the markers are absent."""
    doc = path.read_text() if path.exists() else "# Performance\n"
    if start in doc and end in doc:
        head, rest = doc.split(start, 1)
        _, tail = rest.split(end, 1)
        doc = head + text + tail
    else:
        doc = doc.rstrip("\n") + f"\n\n## {heading}\n\n" + text + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc)
