"""README.md's Python examples run as written.

Every ```python block of README.md is executed, top to bottom, each in a fresh namespace: a
user copies them first (issue 21: the example once built a train-mode model and called it
without rngs, on a batch its bn_group_size rejected). A block that needs what a test cannot
provide (downloaded weights, a data set) starts with the line `# not run by tests: REASON`,
which this test honours and requires to give a reason.
"""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SKIP = "# not run by tests:"


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(line number, source) of each ```python fenced block."""
    return [(text.count("\n", 0, m.start()) + 2, m.group(1))
            for m in re.finditer(r"^```python\n(.*?)^```$", text, re.S | re.M)]


BLOCKS = python_blocks(README.read_text(encoding="utf-8"))


def test_readme_has_python_examples():
    assert BLOCKS, "README.md has no ```python block"
    assert any(not code.startswith(SKIP) for _, code in BLOCKS), "every README example is skipped"


@pytest.mark.parametrize("line,code", BLOCKS, ids=[f"README.md:{line}" for line, _ in BLOCKS])
def test_readme_python_block_runs(line, code):
    if code.startswith(SKIP):
        reason = code.splitlines()[0][len(SKIP):].strip()
        assert reason, f"README.md:{line}: {SKIP!r} without a reason"
        pytest.skip(f"README.md:{line}: {reason}")
    exec(compile(code, f"README.md:{line}", "exec"), {"__name__": "readme_example"})
