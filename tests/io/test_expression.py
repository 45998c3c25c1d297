"""Tests of the safe ``log_density`` formula parser and evaluator (gridflow.io.expression)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gridflow.io.expression
from gridflow.errors import CaseError, ExpressionError
from gridflow.io.expression import MAX_DEPTH, MAX_LENGTH, Expression, parse_expression

X = np.array([-2.75, -1.5, -0.5, 0.0, 0.25, 0.5, 1.0, 1.75, 3.0])
F = np.float64


def expected(fn):
    """Hand-computed numpy reference, with floating-point errors ignored like the evaluator."""
    with np.errstate(all="ignore"):
        return np.asarray(fn(X), dtype=np.float64)


def check(text: str, fn, *, x: np.ndarray = X) -> None:
    result = parse_expression(text).evaluate(x=x)
    assert result.dtype == np.float64 and result.shape == x.shape
    np.testing.assert_array_equal(result, expected(fn))


# ----------------------------------------------------------------------------- arithmetic

ARITHMETIC = [
    ("1 + 2*x", lambda x: 1 + 2 * x),
    ("1 - x - 2", lambda x: (1 - x) - 2),
    ("x / 2 / 3", lambda x: (x / 2) / 3),
    ("2 * x / 3 * x", lambda x: ((2 * x) / 3) * x),
    ("1 + 2 * x - x / 4 + 5", lambda x: ((1 + 2 * x) - x / 4) + 5),
    ("(1 + x) * (2 - x)", lambda x: (1 + x) * (2 - x)),
    ("2 ** 3 ** 2 + 0*x", lambda x: np.power(F(2), np.power(F(3), F(2))) + 0 * x),
    ("x ** 2 ** 0.5", lambda x: np.power(x, np.power(F(2), F(0.5)))),
    ("-x ** 2", lambda x: np.negative(np.power(x, F(2)))),
    ("(-x) ** 2", lambda x: np.power(np.negative(x), F(2))),
    ("2 ** -1 + x", lambda x: np.power(F(2), np.negative(F(1))) + x),
    ("2 ** -x ** 2", lambda x: np.power(F(2), np.negative(np.power(x, F(2))))),
    ("-2 ** 2 + x", lambda x: np.negative(np.power(F(2), F(2))) + x),
    ("x * -2", lambda x: x * np.negative(F(2))),
    ("x - -1", lambda x: x - np.negative(F(1))),
    ("- - x", lambda x: np.negative(np.negative(x))),
    ("-+-x", lambda x: np.negative(np.positive(np.negative(x)))),
    ("+x", lambda x: np.positive(x)),
    ("1e-3 * x + .5 + 2.5E+1 + 3. + 4e2", lambda x: (((1e-3 * x + 0.5) + 25.0) + 3.0) + 400.0),
    (" \t x\n +\t1 ", lambda x: x + 1),
    ("x / 0", lambda x: x / F(0)),
    ("1e400 * x", lambda x: F(np.inf) * x),
    ("-(x - 1)**2 / (2 * 0.5**2)", lambda x: np.negative(np.power(x - 1, F(2))) / (2 * np.power(F(0.5), F(2)))),
]


@pytest.mark.parametrize(("text", "fn"), ARITHMETIC, ids=[t for t, _ in ARITHMETIC])
def test_arithmetic_precedence_and_associativity(text, fn):
    check(text, fn)


def test_power_matches_python_precedence_on_scalars():
    for text, value in [("-2**2", -(2**2)), ("2**3**2", 2 ** 3**2), ("2**-1", 2**-1), ("-(-2)**3", -((-2) ** 3))]:
        assert parse_expression(text).evaluate(x=0.0) == value


# ----------------------------------------------------------------------------- functions and constants

FUNCTIONS_1 = ["abs", "exp", "log", "log1p", "sqrt", "sin", "cos", "tan", "tanh", "arctan"]


@pytest.mark.parametrize("name", FUNCTIONS_1)
def test_unary_functions(name):
    check(f"{name}(x)", getattr(np, name))
    check(f"{name}(2*x - 1)", lambda x: getattr(np, name)(2 * x - 1))


@pytest.mark.parametrize("name", ["minimum", "maximum", "logaddexp"])
def test_binary_functions(name):
    func = getattr(np, name)
    check(f"{name}(x, 0.5)", lambda x: func(x, 0.5))
    check(f"{name}(-x, x**2)", lambda x: func(np.negative(x), np.power(x, F(2))))


def test_constants():
    check("pi + 0*x", lambda x: np.pi + 0 * x)
    check("e + 0*x", lambda x: np.e + 0 * x)
    check("2*pi*x", lambda x: (2 * np.pi) * x)
    check("e**x", lambda x: np.power(F(np.e), x))
    check("-2*minimum(abs(x), abs(x - 15))", lambda x: np.negative(F(2)) * np.minimum(np.abs(x), np.abs(x - 15)))


@pytest.mark.parametrize(
    ("op", "func"),
    [("<", np.less), ("<=", np.less_equal), (">", np.greater), (">=", np.greater_equal), ("==", np.equal), ("!=", np.not_equal)],
)
def test_where_with_each_comparison(op, func):
    check(f"where(x {op} 0.25, x, -1)", lambda x: np.where(func(x, 0.25), x, -1.0))
    check(
        f"where(x*x {op} 2*x, -x**2, log(abs(x)))",
        lambda x: np.where(func(x * x, 2 * x), np.negative(np.power(x, F(2))), np.log(np.abs(x))),
    )


def test_nested_where_and_functions():
    check(
        "where(x < 0, where(x < -1, -1, x), logaddexp(x, maximum(x, 1)))",
        lambda x: np.where(x < 0, np.where(x < -1, -1.0, x), np.logaddexp(x, np.maximum(x, 1.0))),
    )


# ----------------------------------------------------------------------------- shapes and evaluation

def test_two_dimensional_broadcasting():
    x = np.linspace(-1.0, 1.0, 4)[:, None]
    y = np.linspace(0.0, 2.0, 3)[None, :]
    expr = parse_expression("-(x**2 + 10*y) / 2", variables=("x", "y"))
    result = expr.evaluate(x=x, y=y)
    assert result.shape == (4, 3) and result.dtype == np.float64
    np.testing.assert_array_equal(result, np.negative(np.power(x, F(2)) + 10 * y) / 2)
    assert expr.names() == frozenset({"x", "y"})
    only_x = parse_expression("-abs(x)", variables=("x", "y"))
    assert only_x.names() == frozenset({"x"})
    np.testing.assert_array_equal(only_x.evaluate(x=x, y=y), np.broadcast_to(-np.abs(x), (4, 3)))


def test_constant_formula_returns_full_writable_array():
    result = parse_expression("-1").evaluate(x=X)
    assert result.shape == X.shape and result.dtype == np.float64
    np.testing.assert_array_equal(result, np.full(X.shape, -1.0))
    result[0] = 5.0  # a real array, not a read-only broadcast view
    grid = parse_expression("pi", variables=("x", "y")).evaluate(x=np.zeros((5, 1)), y=np.zeros((1, 2)))
    np.testing.assert_array_equal(grid, np.full((5, 2), np.pi))
    assert parse_expression("-1").names() == frozenset()
    scalar = parse_expression("x + 1").evaluate(x=2)
    assert isinstance(scalar, np.ndarray) and scalar.shape == () and scalar == 3.0


def test_evaluation_ignores_floating_point_errors():
    # conftest makes numpy errors raise; the evaluator must silence them itself.
    result = parse_expression("log(x) + 1/x + exp(1000*x) + sqrt(x) - 0*x**-2").evaluate(x=np.array([-1.0, 0.0, 1.0]))
    assert np.isnan(result[0]) and np.isnan(result[1]) and result[2] == np.inf
    assert parse_expression("0**-1 + 10**400 - x").evaluate(x=0.0) == np.inf
    assert np.isnan(parse_expression("(-8)**(1/3) + x").evaluate(x=0.0))


def test_evaluate_requires_exactly_the_variables():
    expr = parse_expression("x + y", variables=("x", "y"))
    with pytest.raises(ExpressionError, match="missing: y"):
        expr.evaluate(x=1.0)
    with pytest.raises(ExpressionError, match="z"):
        expr.evaluate(x=1.0, y=1.0, z=1.0)
    with pytest.raises(ExpressionError, match="broadcastable"):
        expr.evaluate(x=np.zeros(3), y=np.zeros(4))
    # every declared variable is needed, even if the formula does not use it
    with pytest.raises(ExpressionError, match="missing: y"):
        parse_expression("x", variables=("x", "y")).evaluate(x=1.0)


def test_expression_is_immutable_and_keeps_its_text():
    expr = parse_expression(" -abs(x) ")
    assert isinstance(expr, Expression)
    assert expr.text == " -abs(x) " and expr.variables == ("x",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        expr.text = "x"  # type: ignore[misc]
    assert expr == parse_expression(" -abs(x) ") and hash(expr) == hash(parse_expression(" -abs(x) "))


def test_long_and_deep_but_valid_formulas():
    long_sum = parse_expression("+".join(["x"] * 5000))
    np.testing.assert_array_equal(long_sum.evaluate(x=np.array([1.0, 2.0])), [5000.0, 10000.0])
    signs = parse_expression("-" * 9001 + "x")
    np.testing.assert_array_equal(signs.evaluate(x=X), np.negative(X))
    deep = parse_expression("(" * MAX_DEPTH + "x" + ")" * MAX_DEPTH)
    np.testing.assert_array_equal(deep.evaluate(x=X), X)
    calls = parse_expression("abs(" * MAX_DEPTH + "x" + ")" * MAX_DEPTH)
    np.testing.assert_array_equal(calls.evaluate(x=X), np.abs(X))


def test_expression_error_is_a_case_error():
    assert issubclass(ExpressionError, CaseError)


def test_bad_variables_argument():
    with pytest.raises(ValueError):
        parse_expression("x", variables=("exp",))
    with pytest.raises(ValueError):
        parse_expression("x", variables=("x", "x"))
    with pytest.raises(TypeError):
        parse_expression("x", variables="x")


# ----------------------------------------------------------------------------- rejections

XY = ("x", "y")
REJECTED = [
    # (formula, variables, column, fragments the message must contain)
    ("__import__('os')", ("x",), 1, ["'__import__'", "unknown"]),
    ("x.real", ("x",), 2, ["'.'", "not allowed"]),
    ("x[0]", ("x",), 2, ["'['", "indexing"]),
    ('os.system("ls")', ("x",), 1, ["'os'", "unknown"]),
    ("lambda: 1", ("x",), 1, ["'lambda'", "unknown"]),
    ("exp(x, 2)", ("x",), 6, ["exp takes 1 argument", "','"]),
    ("exp", ("x",), 1, ["'exp'", "without a call", "exp(a)"]),
    ("x +", ("x",), 4, ["end of the formula"]),
    ("(x", ("x",), 1, ["unclosed", "'('"]),
    ("1 2", ("x",), 3, ["'2'", "operator"]),
    ("y", ("x",), 1, ["'y'", "variables x,"]),
    ("x < 1", ("x",), 3, ["'<'", "first argument of where"]),
    ('"abc"', ("x",), 1, ["'\"'", "strings"]),
    ("", ("x",), 1, ["empty"]),
    ("   ", ("x",), 1, ["empty"]),
    ("minimum(x, y=1)", XY, 13, ["'='", "keyword"]),
    ("minimum(x, y=1)", ("x",), 12, ["'y'", "unknown"]),
    ("exp()", ("x",), 5, ["exp takes 1 argument", "none"]),
    ("minimum(x)", ("x",), 10, ["minimum takes 2 arguments", "after 1 argument"]),
    ("where(x, 1, 2, 3)", ("x",), 8, ["must be a comparison", "','"]),
    ("where(x < 1, 1, 2, 3)", ("x",), 18, ["where takes 3 arguments", "','"]),
    ("where(0 < x < 1, 1, 2)", ("x",), 13, ["second comparison", "'<'"]),
    ("where(x < 1, x > 0, 2)", ("x",), 16, ["'>'", "first argument of where"]),
    ("maximum(x < 1, 2)", ("x",), 11, ["'<'", "first argument of where"]),
    ("(x < 1)", ("x",), 4, ["'<'"]),
    ("2x", ("x",), 1, ["'2x'", "2*x"]),
    ("1e", ("x",), 1, ["'1e'", "exponent"]),
    ("x ^ 2", ("x",), 3, ["'^'", "**"]),
    ("x = 1", ("x",), 3, ["'='"]),
    ("x & x", ("x",), 3, ["'&'"]),
    ("x ** ", ("x",), 6, ["end of the formula"]),
    ("x * * 2", ("x",), 5, ["'*'"]),
    ("x // 2", ("x",), 4, ["'/'"]),
    (")", ("x",), 1, ["')'"]),
    ("x)", ("x",), 2, ["unmatched ')'"]),
    ("(x, 1)", ("x",), 3, ["','"]),
    ("pi(2)", ("x",), 3, ["'('"]),
    ("sin x", ("x",), 1, ["'sin'", "sin(a)"]),
    ("np.exp(x)", ("x",), 1, ["'np'", "module prefix"]),
    ("sqr(x)", ("x",), 1, ["'sqr'", "sqrt"]),
    ("x if x else 1", ("x",), 3, ["'if'"]),
    ("x\n+ ]", ("x",), 5, ["']'"]),
    ("exp(x", ("x",), 4, ["unclosed"]),
    ("minimum(x,)", ("x",), 11, ["')'"]),
    ("x @ x", ("x",), 3, ["'@'"]),
    ("x; 1", ("x",), 2, ["';'"]),
    ("\u03c0", ("x",), 1, ["'\u03c0'"]),
    ("(" * (MAX_DEPTH + 1) + "x" + ")" * (MAX_DEPTH + 1), ("x",), MAX_DEPTH + 1, ["200 levels"]),
    ("exp(" * (MAX_DEPTH + 1) + "x" + ")" * (MAX_DEPTH + 1), ("x",), 4 * MAX_DEPTH + 4, ["200 levels"]),
    ("2**" * (MAX_DEPTH + 1) + "x", ("x",), 3 * MAX_DEPTH + 2, ["200 levels"]),
]


def _pointer_column(message: str) -> int:
    """1-based column the caret line points at (for formulas short enough to show whole)."""
    *_, snippet, caret = message.splitlines()
    assert snippet.startswith("    ") and caret.startswith("    ")
    return caret.index("^") - 4 + 1 - (3 if snippet.startswith("    ...") else 0)


@pytest.mark.parametrize(
    ("text", "variables", "column", "fragments"),
    REJECTED,
    ids=[repr(t[:20]) + ("..." if len(t) > 20 else "") + f"-{len(v)}d" for t, v, _, _ in REJECTED],
)
def test_rejected_with_useful_message(text, variables, column, fragments):
    with pytest.raises(ExpressionError) as info:
        parse_expression(text, variables=variables)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert message.startswith("Invalid formula:")
    assert f"column {column}" in message
    assert "Allowed are" in message and "where(condition, a, b)" in message  # says what is allowed
    assert ", ".join(variables) in message
    if len(text) <= 72:
        assert _pointer_column(message) == column
        assert message.splitlines()[-2][4:].rstrip() == "".join(" " if c.isspace() else c for c in text).rstrip()


def test_caret_in_a_long_formula_is_under_the_token():
    text = "+".join(["x"] * 100) + "+ 1 2 +" + "+".join(["x"] * 100)
    with pytest.raises(ExpressionError) as info:
        parse_expression(text)
    *_, snippet, caret = str(info.value).splitlines()
    assert snippet.startswith("    ...") and snippet.endswith("...")
    assert snippet[caret.index("^")] == "2" and caret.count("^") == 1


def test_too_long_formula():
    text = "x+" * (MAX_LENGTH // 2) + "x"
    with pytest.raises(ExpressionError, match=f"{len(text)} characters long and the limit is {MAX_LENGTH}"):
        parse_expression(text)


def test_non_string_formula():
    with pytest.raises(ExpressionError, match="must be a string"):
        parse_expression(3.0)  # type: ignore[arg-type]


def test_error_when_the_python_stack_is_nearly_used_up():
    import sys

    def recurse(n):
        return recurse(n - 1) if n else parse_expression("(" * MAX_DEPTH + "x" + ")" * MAX_DEPTH)

    depth, frame = 0, sys._getframe()
    while frame is not None:
        depth, frame = depth + 1, frame.f_back
    with pytest.raises(ExpressionError, match="nested too deeply"):
        recurse(sys.getrecursionlimit() - depth - 100)


# ----------------------------------------------------------------------------- safety

PIECES = [
    "x", "y", "1", "0", ".5", "2e3", "e", "pi", "+", "-", "*", "/", "**", "(", ")", ",", "<", "<=", "==", "!=",
    "=", ".", "[", "]", "'", '"', " ", "exp", "minimum", "where", "log", "abs", "__import__", "_", "^", "e-", "1e",
]


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.lists(st.sampled_from(PIECES), max_size=14).map("".join),
        st.text(alphabet="xy0123456789.e+-*/(),<=>! _[]'\"aw", max_size=25),
    )
)
def test_random_strings_parse_or_raise_expression_error(text):
    try:
        expr = parse_expression(text, variables=("x", "y"))
    except ExpressionError as exc:
        assert str(exc).startswith("Invalid formula:")
        return
    result = expr.evaluate(x=X[:, None], y=X[None, :3])
    assert result.shape == (X.size, 3) and result.dtype == np.float64
    assert expr.names() <= {"x", "y"}


def test_package_never_calls_eval_exec_or_uses_ast():
    package = Path(gridflow.__file__).parent
    for path in package.rglob("*.py"):
        source = path.read_text(encoding="utf-8")
        assert not re.search(r"(?<![\w.])(eval|exec)\s*\(", source), path
    source = Path(gridflow.io.expression.__file__).read_text(encoding="utf-8")
    assert not re.search(r"^\s*(import ast|from ast )", source, re.M)
    assert "__import__" not in source and "compile(" not in source.replace("re.compile(", "")
