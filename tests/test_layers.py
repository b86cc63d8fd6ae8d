"""The layering of docs/ARCHITECTURE.md, read from the source with `ast`: which package may
import which, no import cycle anywhere in src/flaxnets, and commands that leave JAX unimported until they
run (so `flaxnets --help` stays fast)."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "flaxnets"

ALL_LAYERS = {"errors", "text", "imagenet", "config", "choices", "models", "data", "recipes", "weights", "export",
              "optimizers", "train", "report", "commands", "cli"}

#: Layer -> the flaxnets layers it must not import (anywhere in its modules, lazily or not).
FORBIDDEN = {
    "errors": {"config", "models", "data", "recipes", "weights", "export", "train", "report", "commands", "cli"},
    "config": {"models", "data", "recipes", "weights", "export", "train", "report", "commands", "cli", "optimizers"},
    "choices": ALL_LAYERS - {"choices"},
    "models": {"data", "recipes", "weights", "export", "train", "report", "commands", "cli"},
    "data": {"models", "recipes", "weights", "export", "train", "report", "commands", "cli"},
    "recipes": {"data", "weights", "export", "train", "report", "commands", "cli"},
    "weights": {"data", "recipes", "export", "train", "report", "commands", "cli"},
    "export": {"recipes", "weights", "train", "report", "commands", "cli"},
    "optimizers": {"models", "data", "recipes", "weights", "export", "train", "report", "commands", "cli"},
    "train": {"export", "report", "commands", "cli"},
    "report": {"export", "commands", "cli"},
    "text": ALL_LAYERS - {"text"},
    "imagenet": ALL_LAYERS - {"imagenet"},
}

#: Libraries a command module or the CLI must not import when it is loaded.
HEAVY = ("jax", "flax", "optax", "orbax", "grain", "torch", "onnx", "keras", "tensorflow")


def _layer(module: str) -> str:
    """flaxnets.train.loop -> train; flaxnets.errors -> errors; flaxnets -> ''."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, path


def _imports(path: Path, *, top_level_only: bool = False) -> set[str]:
    """Modules `path` imports (absolute names; `from a import b` gives a and a.b)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


MODULES = dict(_modules())


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _layer(m) in FORBIDDEN))
def test_imports_point_down_the_layers(module):
    layer = _layer(module)
    bad = sorted(name for name in _imports(MODULES[module])
                 if name.startswith("flaxnets.") and _layer(name) in FORBIDDEN[layer])
    assert not bad, f"{module} ({layer}) imports {bad}; docs/ARCHITECTURE.md says {layer} may not"


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph` (module -> modules it imports), or None."""
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt, path + [nxt])
                if found:
                    return found
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node, [node])
            if found:
                return found
    return None


def test_no_import_cycle_anywhere():
    # Every package and module of src/flaxnets, lazy imports included. `from a import b` is an
    # edge to the package a (its __init__) and to a.b: a registry that imports its families
    # through a package whose __init__ imports the registry is a cycle.
    graph = {m: {i for i in _imports(MODULES[m]) if i in MODULES and i != m} for m in MODULES}
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_check_sees_a_cycle_through_a_package():
    # The graph of the registry before families registered themselves.
    graph = {"flaxnets.models": {"flaxnets.models.counting"},
             "flaxnets.models.counting": {"flaxnets.models.registry"},
             "flaxnets.models.registry": {"flaxnets.models", "flaxnets.models.efficientnet"},
             "flaxnets.models.efficientnet": set()}
    assert _cycle(graph) == ["flaxnets.models", "flaxnets.models.counting",
                             "flaxnets.models.registry", "flaxnets.models"]


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("flaxnets.commands.") or m == "flaxnets.cli"))
def test_commands_import_no_heavy_library_at_module_level(module):
    heavy = sorted(n for n in _imports(MODULES[module], top_level_only=True) if n.split(".")[0] in HEAVY)
    assert not heavy, f"{module} imports {heavy} at module level; import them inside run()"


def _heavy_modules_after(script: str) -> str:
    """The sorted HEAVY modules loaded once `script` has run in a fresh interpreter, as printed."""
    script += f"import sys\nprint(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))\n"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(SRC), "PATH": ""})
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


def test_loading_every_command_leaves_jax_unimported():
    assert _heavy_modules_after("import importlib, pkgutil\n"
                                "import flaxnets.cli, flaxnets.commands as c\n"
                                "for info in pkgutil.iter_modules(c.__path__): "
                                "importlib.import_module(f'flaxnets.commands.{info.name}')\n") == "[]"


def test_importing_the_config_loads_no_jax():
    """The base layer reads and checks a config without JAX: config.py reads the optimizer and
    schedule registry of flaxnets.choices (names and argument specs), whose optax builders live in
    flaxnets.optimizers and are imported only when a run builds them. Guards issue 22 (before it,
    config.py imported flaxnets.optimizers, hence JAX and optax: about 1.9 s)."""
    assert _heavy_modules_after(
        "import flaxnets, flaxnets.config, flaxnets.choices\n"
        "from flaxnets.config import Config, apply_overrides, describe_choices, describe_keys\n"
        "apply_overrides(Config(), ['optimizer.name=rmsprop', 'optimizer.momentum=0.9', 'schedule.name=exponential'])\n"
        "describe_keys(), describe_choices()\n") == "[]"


def test_every_registry_entry_names_a_function_that_imports():
    """Each optimizer and schedule entry's builder (a dotted path, imported only when a run builds
    it) resolves to a function: a misspelt path fails here, not in the middle of a run."""
    from flaxnets.choices import OPTIMIZERS, SCHEDULES

    for name, entry in {**OPTIMIZERS, **SCHEDULES}.items():
        assert callable(entry.make), f"{name}: {entry.builder!r} is not a function"


def test_param_kinds_of_the_zoo_are_the_configs():
    # The weight-decay keys (config.PARAM_KINDS) name exactly the kinds the models report.
    from flax import nnx

    from flaxnets.config import PARAM_KINDS
    from flaxnets.models import create_model, param_kinds

    kinds = set()
    for name in ("efficientnet_b0", "mobilenet_v3_small", "mobilenet_v4_hybrid_medium"):
        kinds |= set(param_kinds(nnx.eval_shape(lambda: create_model(name))).values())
    assert kinds == set(PARAM_KINDS)
