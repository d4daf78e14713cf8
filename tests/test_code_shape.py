"""The package stays readable in pieces: no module over 400 lines, no function over 60."""

import ast

from tests.test_layers import PACKAGE, package_modules

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def long_functions(source: str) -> list[tuple[str, int]]:
    """`(name, lines)` of every function (methods and nested ones too) over the limit."""
    return [
        (node.name, node.end_lineno - node.lineno + 1)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]


def test_no_module_or_function_is_too_long():
    too_long = []
    for path in package_modules():
        source = path.read_text()
        name = path.relative_to(PACKAGE.parent)
        if len(source.splitlines()) > MAX_MODULE_LINES:
            too_long.append(f"{name}: {len(source.splitlines())} lines")
        too_long += [f"{name}: {fn}() {n} lines" for fn, n in long_functions(source)]
    assert not too_long, "\n".join(too_long)


def test_the_function_check_sees_a_long_function():
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    assert long_functions(f"def f():\n{body}\n") == [("f", MAX_FUNCTION_LINES + 1)]
    assert long_functions("def g():\n    return 1\n") == []
