"""The examples of docs/api.md run: every ```python block, in order, in one namespace, in a
temporary working directory (later blocks use what earlier ones trained and defined).

A block preceded by `<!-- needs: mql.envs.register -->` (names separated by commas) uses an
API that does not exist yet: it runs once every name it needs exists, and is reported as
skipped until then (`test_api_examples_waiting_for_an_api`). Blocks after it must not depend
on it. The namespace is a module in `sys.modules`, as a user's script would be, so classes a
block defines can be imported by their module name.
"""

from __future__ import annotations

import importlib
import re
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import gymnasium
import pytest

import mql.envs

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"
_BLOCK = re.compile(
    r"(?:<!--\s*needs:\s*(?P<needs>[^>]*?)\s*-->\s*\n)?^```python[ \t]*\n(?P<code>.*?)^```[ \t]*$",
    re.DOTALL | re.MULTILINE,
)
_MODULE = "mql_api_docs_examples"


@dataclass(frozen=True)
class Block:
    line: int
    """Line of docs/api.md where the code starts."""
    code: str
    needs: tuple[str, ...]


def doc_blocks(text: str) -> list[Block]:
    blocks = []
    for m in _BLOCK.finditer(text):
        needs = tuple(n.strip() for n in (m["needs"] or "").split(",") if n.strip())
        line = text.count("\n", 0, m.start("code")) + 1
        blocks.append(Block(line, m["code"], needs))
    return blocks


def exists(dotted: str) -> bool:
    """Whether `dotted` ("package.module.attribute") names something importable."""
    module, _, attr = dotted.rpartition(".")
    try:
        return hasattr(importlib.import_module(module), attr)
    except ImportError:
        return False


def missing(block: Block) -> list[str]:
    return [n for n in block.needs if not exists(n)]


BLOCKS = doc_blocks(DOC.read_text())
WAITING = [b for b in BLOCKS if b.needs]


def test_doc_has_examples():
    assert len(BLOCKS) >= 7
    assert DOC.read_text().count("```python") == len(BLOCKS), "a python block did not parse"
    assert DOC.read_text().count("<!-- needs:") == len(WAITING), "a needs marker is misplaced"


def test_api_examples_run(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    module = types.ModuleType(_MODULE)
    monkeypatch.setitem(sys.modules, _MODULE, module)
    # Undo registrations a block makes (task families, gymnasium ids) for the other tests.
    tables = {
        k: v.copy()
        for k, v in vars(mql.envs).items()
        if not k.startswith("__") and isinstance(v, dict | list)
    }
    gym_ids = set(gymnasium.registry)
    try:
        for block in BLOCKS:
            if missing(block):
                continue
            # leading newlines: tracebacks name the line of docs/api.md
            code = "\n" * (block.line - 1) + block.code
            exec(compile(code, str(DOC), "exec"), module.__dict__)
    finally:
        for name, saved in tables.items():
            table = getattr(mql.envs, name)
            table.clear()
            if isinstance(table, list):
                table.extend(saved)
            else:
                table.update(saved)
        for gym_id in set(gymnasium.registry) - gym_ids:
            del gymnasium.registry[gym_id]


@pytest.mark.parametrize("block", WAITING, ids=[f"line{b.line}" for b in WAITING])
def test_api_examples_waiting_for_an_api(block):
    """Reports the blocks that `test_api_examples_run` left out (it ran the others)."""
    if missing(block):
        pytest.skip(f"docs/api.md:{block.line} needs {', '.join(missing(block))}")
