"""The package's layers: each module imports only from its own layer or the layers above it,
and the process bootstrap imports jax and the error leaf alone."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "purejaxppo"

# Top to bottom: a module may import from its own layer and from any layer above it.
LAYERS = (
    ("errors", "config", "presets", "metrics"),
    ("envs",),
    ("ppo",),
    ("runs",),
    ("outputs",),
    ("session",),
    ("cli", "__main__"),
)


def layer_of(module: str) -> int:
    """The layer index of `purejaxppo.<first part>...`."""
    first = module.split(".")[1]
    for index, names in enumerate(LAYERS):
        if first in names:
            return index
    raise AssertionError(f"purejaxppo.{first} is in no layer: add it to LAYERS")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> list[str]:
    """Every `purejaxppo...` module that `path` imports, at any depth (also inside functions
    and `TYPE_CHECKING` blocks)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
            # `from purejaxppo.outputs import console` imports purejaxppo.outputs.console.
            found += [f"{node.module}.{alias.name}" for alias in node.names]
    return [name for name in found if name.startswith("purejaxppo.")]


def package_modules() -> list[Path]:
    return sorted(
        p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE
    )


def test_every_module_belongs_to_a_layer():
    for path in package_modules():
        layer_of(module_name(path))


def test_no_module_imports_a_layer_below_its_own():
    upward = []
    for path in package_modules():
        own = layer_of(module_name(path))
        for name in imported_modules(path):
            layered = name.split(".")[1] in {n for names in LAYERS for n in names}
            if layered and layer_of(name) > own:
                upward.append(f"{module_name(path)} imports {name}")
    assert not upward, "imports against the layer order:\n" + "\n".join(upward)


def test_the_layer_check_sees_a_violation(tmp_path):
    """The walker finds an upward import, inside a function too (so the test can fail)."""
    module = tmp_path / "bad.py"
    module.write_text("def f():\n    from purejaxppo.cli.main import main\n")
    assert "purejaxppo.cli.main" in imported_modules(module)
    assert layer_of("purejaxppo.cli.main") > layer_of("purejaxppo.ppo.trainer")


def test_process_bootstrap_imports_jax_and_the_error_leaf_alone():
    path = PACKAGE / "runs" / "processes.py"
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(
                node.module if node.module.startswith("purejaxppo") else node.module.split(".")[0]
            )
    third_party = {name for name in imported if name not in sys.stdlib_module_names}
    assert third_party == {"jax", "purejaxppo.errors"}


@pytest.mark.parametrize(
    "statement",
    ["import purejaxppo.runs.processes", "from purejaxppo import initialize_distributed"],
)
def test_importing_the_bootstrap_starts_no_backend_and_loads_no_gymnax(statement):
    code = (
        f"{statement}\n"
        "import sys\n"
        "from jax._src import xla_bridge\n"
        "assert not xla_bridge.backends_are_initialized(), 'backend started'\n"
        "assert 'gymnax' not in sys.modules, 'gymnax imported'\n"
        "assert 'flax' not in sys.modules, 'flax imported'\n"
        "print('clean')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "clean"
