"""tools/mutation_check.py (issue 20): its list of mutations is sound and its verdicts mean what
they say. The mutation runs themselves are not part of the suite (an hour of train-step
compiles); docs/REFERENCE_TRAJECTORIES.md has their results."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("mutation_check", ROOT / "tools" / "mutation_check.py")
mutation_check = importlib.util.module_from_spec(spec)
sys.modules["mutation_check"] = mutation_check
spec.loader.exec_module(mutation_check)


def test_every_mutation_applies_once_and_names_only_fidelity_tests():
    assert mutation_check.check_mutations(mutation_check.MUTATIONS) == []
    names = [m.name for m in mutation_check.MUTATIONS]
    assert len(names) == len(set(names))


def test_a_broken_mutation_is_reported():
    good = mutation_check.MUTATIONS[0]
    broken = [
        mutation_check.Mutation("gone", "old string absent", good.file, "no such text in the file", "x", good.tests),
        mutation_check.Mutation("restated", "a test that is not a comparison", good.file, good.old, good.new,
                                ("tests/train/test_recipes.py::test_recipe_values",)),
    ]
    problems = mutation_check.check_mutations(broken)
    assert any("gone:" in p and "occurs 0 times" in p for p in problems), problems
    assert any("restated:" in p and "not one of FIDELITY_TESTS" in p for p in problems), problems


@pytest.mark.slow
def test_every_named_test_exists():
    """A test id that matches nothing (a renamed parametrisation) would make pytest exit 4 and the
    mutation an "error"; collect them all once."""
    tests = sorted({t for m in mutation_check.MUTATIONS for t in m.tests})
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                           "-m", "slow or not slow", *tests], cwd=ROOT, capture_output=True, text=True)
    # pytest exits 4 with "ERROR: not found: <id>" for an id that matches nothing.
    assert done.returncode == 0 and "not found" not in done.stdout + done.stderr, (
        done.stdout[-3000:] + done.stderr[-3000:])
    collected = {line.split("[")[0] for line in done.stdout.splitlines() if "::" in line}
    assert collected == {t.split("[")[0] for t in tests}


FAILED = """tests/train/x.py::test_a[b] FAILED
E       AssertionError: 1 departures from the reference
tests/train/x.py:12: AssertionError
"""


@pytest.mark.parametrize("status,log,verdict", [
    (0, "3 passed\n", "survived"),
    (1, FAILED + "1 failed, 2 passed\n", "caught"),
    # pytest-xdist's -x ends the run with Interrupted (exit 2) at the first failure.
    (2, FAILED + "xdist.dsession.Interrupted: stopping after 1 failures\n1 failed\n", "caught"),
    # A crash is not a comparison that failed.
    (1, "tests/train/x.py:12: TypeError\n1 failed\n", "error (pytest exit 1; see the log)"),
    (1, FAILED + "tests/train/x.py:20: KeyError\n2 failed\n", "error (pytest exit 1; see the log)"),
    (2, "ERROR collecting tests/train/x.py\n", "error (pytest exit 2; see the log)"),
    (4, "ERROR: not found: tests/train/x.py::test_a[c]\n", "error (pytest exit 4; see the log)"),
])
def test_verdicts(status, log, verdict, tmp_path):
    path = tmp_path / "run.log"
    path.write_text(log)
    assert mutation_check.verdict_of(status, path) == verdict
