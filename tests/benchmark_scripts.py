"""Load a script of benchmarks/ as a module, for the tests of its functions."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).parent.parent / "benchmarks"


def load_benchmark_script(name: str) -> ModuleType:
    """`benchmarks/<name>.py` as a module named `name` (registered in `sys.modules`, where
    dataclasses look their module up while it executes)."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
