"""The README against the code: its table of settings is the fields' own docstrings, and its
Python examples import names that exist."""

import ast
import dataclasses
import importlib
import re
import textwrap
from pathlib import Path

from purejaxppo.config import Hyperparams, PPOConfig, field_docs

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- settings table: start -->", "<!-- settings table: end -->"


def settings_table() -> str:
    """The README's table of every `PPOConfig` and `Hyperparams` field, from `field_docs`."""
    rows = ["| setting | kind | default | what it is |", "| --- | --- | --- | --- |"]
    for cls, kind in ((PPOConfig, "static"), (Hyperparams, "traced")):
        docs = field_docs(cls)
        for field in dataclasses.fields(cls):
            default = field.default
            shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
            rows.append(f"| `{field.name}` | {kind} | `{shown}` | {docs[field.name]} |")
    return "\n".join(rows)


def test_every_field_has_a_docstring():
    for cls in (PPOConfig, Hyperparams):
        docs = field_docs(cls)
        missing = [f.name for f in dataclasses.fields(cls) if not docs.get(f.name)]
        assert not missing, f"{cls.__name__} fields without a docstring: {missing}"


def test_field_docs_reads_the_string_under_each_field():
    @dataclasses.dataclass
    class Example:
        documented: int = 1
        """Its doc,
        on two lines."""

        undocumented: int = 2

    assert field_docs(Example) == {"documented": "Its doc, on two lines."}


def test_readme_settings_table_is_made_from_the_field_docs():
    text = README.read_text()
    assert START in text and END in text, "the README lost its settings table markers"
    table = text.split(START)[1].split(END)[0].strip()
    expected = settings_table()
    assert table == expected, f"regenerate the README's settings table:\n{expected}"


def readme_python_imports() -> list[tuple[str, str]]:
    """(module, name) of every `from purejaxppo... import name` in the README's code."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    found = []
    for block in blocks:
        for node in ast.walk(ast.parse(textwrap.dedent(block))):  # also blocks in a list
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("purejaxppo"):
                found += [(node.module, alias.name) for alias in node.names]
    return found


def test_readme_python_examples_import_names_that_exist():
    imports = readme_python_imports()
    assert len(imports) >= 5, "the README's examples should show the Python API"
    for module, name in imports:
        assert hasattr(importlib.import_module(module), name), f"{module}.{name} is gone"
