"""Safe parser and evaluator of ``log_density`` formulas.

A formula is read by a hand-written tokenizer and recursive-descent parser into a small
tree of nodes, which is flattened into a postfix program of numpy calls.  Nothing is
handed to Python's own evaluator, and nothing but the names below can be reached.
Grammar (EBNF; whitespace is free)::

    formula    = sum ;
    sum        = product { ("+" | "-") product } ;
    product    = factor { ("*" | "/") factor } ;
    factor     = { "+" | "-" } primary [ "**" factor ] ;   (* -x**2 = -(x**2); 2**-1 is fine *)
    primary    = number | variable | constant | call | "(" sum ")" ;
    call       = function "(" sum { "," sum } ")"           (* fixed number of arguments *)
               | "where" "(" sum comparison sum "," sum "," sum ")" ;
    comparison = "<" | "<=" | ">" | ">=" | "==" | "!=" ;
    number     = ( digits [ "." [ digits ] ] | "." digits ) [ ("e" | "E") [ "+" | "-" ] digits ] ;

The variables are those given to :func:`parse_expression` (``x`` in 1D, ``x, y`` in
2D), the constants are ``pi`` and ``e``, and the functions (with their numbers of
arguments) are listed in :data:`FUNCTIONS`.  A comparison is allowed only as the first
argument of ``where``.  Formulas are limited to :data:`MAX_LENGTH` characters and
:data:`MAX_DEPTH` levels of nesting (parentheses, calls, ``**`` exponents).  Anything else
is an :class:`~gridflow.errors.ExpressionError`, raised at parse time, whose message names
the offending token and its column and shows the formula with a caret under it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NoReturn

import numpy as np

from gridflow.errors import ExpressionError

__all__ = [
    "CONSTANTS",
    "FUNCTIONS",
    "MAX_DEPTH",
    "MAX_LENGTH",
    "Expression",
    "ExpressionError",
    "parse_expression",
]

#: Longest formula accepted, in characters.
MAX_LENGTH = 10_000
#: Deepest nesting accepted (each parenthesis, function call and ``**`` exponent is a level).
MAX_DEPTH = 200

#: Named constants.
CONSTANTS: dict[str, float] = {"pi": float(np.pi), "e": float(np.e)}
#: Functions: name -> (numpy function, number of arguments).
FUNCTIONS: dict[str, tuple[Callable[..., np.ndarray], int]] = {
    "abs": (np.abs, 1),
    "exp": (np.exp, 1),
    "log": (np.log, 1),
    "log1p": (np.log1p, 1),
    "sqrt": (np.sqrt, 1),
    "sin": (np.sin, 1),
    "cos": (np.cos, 1),
    "tan": (np.tan, 1),
    "tanh": (np.tanh, 1),
    "arctan": (np.arctan, 1),
    "minimum": (np.minimum, 2),
    "maximum": (np.maximum, 2),
    "logaddexp": (np.logaddexp, 2),
    "where": (np.where, 3),
}
_BINARY = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.true_divide, "**": np.power}
_UNARY = {"+": np.positive, "-": np.negative}
_COMPARISONS = {
    "<": np.less,
    "<=": np.less_equal,
    ">": np.greater,
    ">=": np.greater_equal,
    "==": np.equal,
    "!=": np.not_equal,
}


def _signature(name: str) -> str:
    if name == "where":
        return "where(condition, a, b)"
    return f"{name}({', '.join('abc'[: FUNCTIONS[name][1]])})"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


# ----------------------------------------------------------------------------- tree


@dataclass(frozen=True, slots=True, eq=False)
class Number:
    """A number written in the formula, or a named constant (``text`` then its name)."""

    value: float
    text: str


@dataclass(frozen=True, slots=True, eq=False)
class Variable:
    name: str


@dataclass(frozen=True, slots=True, eq=False)
class Apply:
    """An operator (unary ``+ -``, arithmetic ``+ - * / **``, comparison) or a function, as
    written (``op``), applied to its operands; ``function`` is the numpy function it stands for."""

    op: str
    function: Callable[..., np.ndarray]
    args: tuple[Node, ...]


Node = Number | Variable | Apply


def _binary(op: str, left: Node, right: Node) -> Apply:
    """An arithmetic operator or a comparison between two operands."""
    return Apply(op, _BINARY[op] if op in _BINARY else _COMPARISONS[op], (left, right))


_PUSH, _LOAD, _APPLY = 0, 1, 2
_Instruction = tuple[int, object, int]


def _flatten(root: Node) -> tuple[_Instruction, ...]:
    """Flatten a tree into a postfix program, without recursion (trees may be thousands deep)."""
    program: list[_Instruction] = []
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if isinstance(node, Number):
            program.append((_PUSH, np.float64(node.value), 0))
        elif isinstance(node, Variable):
            program.append((_LOAD, node.name, 0))
        elif children_done:
            program.append((_APPLY, node.function, len(node.args)))
        else:
            stack.append((node, True))
            stack.extend((child, False) for child in reversed(node.args))
    return tuple(program)


@dataclass(frozen=True)
class Expression:
    """A parsed formula: ``text``, the allowed ``variables`` and the parse ``tree``."""

    text: str
    variables: tuple[str, ...]
    tree: Node = field(repr=False, compare=False)
    _program: tuple[_Instruction, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_program", _flatten(self.tree))

    def names(self) -> frozenset[str]:
        """The variables the formula actually uses."""
        return frozenset(str(payload) for kind, payload, _ in self._program if kind == _LOAD)

    def evaluate(self, **values: np.ndarray | float) -> np.ndarray:
        """Evaluate with numpy at the given values of *all* the variables.

        Returns a new float64 array with the broadcast shape of the inputs (also for a
        constant formula).  Floating-point warnings are ignored: the caller checks finiteness.
        """
        missing = [v for v in self.variables if v not in values]
        unknown = [k for k in values if k not in self.variables]
        if missing or unknown:
            raise ExpressionError(
                f"Cannot evaluate the formula {self.text!r}: it needs values for exactly the variables "
                f"{', '.join(self.variables) or '(none)'}"
                + (f"; missing: {', '.join(missing)}" if missing else "")
                + (f"; not variables of this formula: {', '.join(unknown)}" if unknown else "")
                + "."
            )
        try:
            env = {name: np.asarray(values[name], dtype=np.float64) for name in self.variables}
            shape = np.broadcast_shapes(*(a.shape for a in env.values()))
        except (TypeError, ValueError, OverflowError) as exc:
            raise ExpressionError(
                f"Cannot evaluate the formula {self.text!r}: the values of "
                f"{', '.join(self.variables)} must be real numbers or arrays of broadcastable shapes ({exc})."
            ) from exc
        stack: list = []
        with np.errstate(all="ignore"):
            for kind, payload, nargs in self._program:
                if kind == _PUSH:
                    stack.append(payload)
                elif kind == _LOAD:
                    stack.append(env[payload])  # type: ignore[index]
                else:
                    args = stack[-nargs:]
                    del stack[-nargs:]
                    stack.append(payload(*args))  # type: ignore[operator]
            return np.array(np.broadcast_to(np.asarray(stack.pop(), dtype=np.float64), shape))


# ----------------------------------------------------------------------------- parser

_NUMBER = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERATORS = ("**", "<=", ">=", "==", "!=", "+", "-", "*", "/", "(", ")", ",", "<", ">")
_BAD_CHARACTERS = {
    ".": "there is no attribute access or method call ('.' only appears inside numbers such as 0.5)",
    "[": "there is no indexing",
    "]": "there is no indexing",
    "'": "strings are not allowed",
    '"': "strings are not allowed",
    "=": "there is no assignment and functions take no keyword arguments (compare with '==' inside where)",
    "!": "write '!=' for 'not equal' (inside where)",
    ":": "there are no lambdas, slices or dictionaries",
    "^": "write '**' for a power",
    "&": "logical operators are not supported (where takes a single comparison; nest where for more)",
    "|": "logical operators are not supported (where takes a single comparison; nest where for more)",
    "~": "logical operators are not supported (where takes a single comparison; nest where for more)",
    "%": "the modulo operator is not supported",
}


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "number" | "name" | "op" | "end"
    text: str
    column: int  # 1-based

    def describe(self) -> str:
        if self.kind == "end":
            return f"the end of the formula (column {self.column})"
        return f"{self.kind + ' ' if self.kind != 'op' else ''}{self.text!r} at column {self.column}"


class _Parser:
    def __init__(self, text: str, variables: tuple[str, ...]) -> None:
        self.text = text
        self.variables = variables
        self.pos = 0
        self.depth = 0
        self.token = self._next_token()

    # -- errors

    def _allowed(self) -> str:
        functions = " ".join(_signature(f) for f in FUNCTIONS)
        return (
            f"Allowed are numbers (3, 0.5, .5, 1e-3), + - * / ** (power), unary + and -, parentheses, the "
            f"variables {', '.join(self.variables) or '(none)'}, the constants {', '.join(CONSTANTS)}, the "
            f"functions {functions}, and comparisons < <= > >= == != only as the first argument of where."
        )

    def _fail(self, message: str, column: int, width: int = 1) -> NoReturn:
        raise ExpressionError(
            f"Invalid formula: {message}. {self._allowed()}\n{_pointer(self.text, column, width)}"
        )

    def _fail_at(self, token: _Token, message: str) -> NoReturn:
        self._fail(message, token.column, max(1, len(token.text)))

    # -- tokenizer (lazy, so errors are reported left to right)

    def _next_token(self) -> _Token:
        text, n = self.text, len(self.text)
        pos = self.pos
        while pos < n and text[pos].isspace():
            pos += 1
        column = pos + 1
        if pos == n:
            self.pos = pos
            return _Token("end", "", column)
        if match := _NUMBER.match(text, pos):
            end = match.end()
            if end < n and (text[end].isalpha() or text[end] == "_"):
                rest = _NAME.match(text, end)
                stuck = text[pos : rest.end()] if rest else text[pos : end + 1]
                hint = (
                    "the exponent of a number needs digits, as in 1e-3"
                    if text[end] in "eE"
                    else f"a product needs '*', as in {match.group()}*{stuck[end - pos :]}"
                )
                self._fail(f"malformed number {stuck!r} at column {column}: {hint}", column, len(stuck))
            self.pos = end
            return _Token("number", match.group(), column)
        if match := _NAME.match(text, pos):
            self.pos = match.end()
            return _Token("name", match.group(), column)
        for op in _OPERATORS:
            if text.startswith(op, pos):
                self.pos = pos + len(op)
                return _Token("op", op, column)
        char = text[pos]
        why = _BAD_CHARACTERS.get(char, "it has no meaning in a formula")
        self._fail(f"the character {char!r} at column {column} is not allowed: {why}", column)

    def _advance(self) -> _Token:
        token = self.token
        self.token = self._next_token()
        return token

    def _enter(self, token: _Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self._fail_at(
                token,
                f"the formula is nested more than {MAX_DEPTH} levels deep at {token.describe()} (each "
                f"parenthesis, function call and ** exponent is a level); simplify it",
            )

    # -- grammar

    def parse(self) -> Node:
        if self.token.kind == "end":
            self._fail("the formula is empty (column 1); write a log density such as -x**2/2", 1)
        node = self._sum()
        if self.token.kind != "end":
            self._unexpected_after_value("the end of the formula")
        return node

    def _sum(self, *, condition: bool = False) -> Node:
        """``sum``, or with ``condition`` the ``sum comparison sum`` of where's first argument."""
        total: Node | None = None
        pending = ""
        product = self._factor()
        while True:
            op = self.token.text if self.token.kind == "op" else ""
            if op in ("*", "/"):
                self._advance()
                product = _binary(op, product, self._factor())
            elif op in ("+", "-"):
                self._advance()
                total = product if total is None else _binary(pending, total, product)
                pending = op
                product = self._factor()
            else:
                break
        node = product if total is None else _binary(pending, total, product)
        if not condition:
            return node
        token = self.token
        if token.text not in _COMPARISONS or token.kind != "op":
            self._fail_at(
                token,
                f"the first argument of where(condition, a, b) must be a comparison such as x < 0 "
                f"(with one of < <= > >= == !=), but {token.describe()} follows the value",
            )
        self._advance()
        right = self._sum()
        if self.token.kind == "op" and self.token.text in _COMPARISONS:
            self._fail_at(
                self.token,
                f"a second comparison {self.token.describe()}: where takes a single comparison, so chained "
                f"comparisons such as 0 < x < 1 are not supported (nest where instead)",
            )
        return _binary(token.text, node, right)

    def _factor(self) -> Node:
        signs: list[str] = []
        while self.token.kind == "op" and self.token.text in ("+", "-"):
            signs.append(self._advance().text)
        token = self.token
        if token.kind == "number":
            self._advance()
            node: Node = Number(float(token.text), token.text)
        elif token.kind == "name":
            node = self._name()
        elif token.kind == "op" and token.text == "(":
            self._advance()
            self._enter(token)
            node = self._sum()
            self._close(token, "')'")
        else:
            what = f"end of the formula at column {token.column}" if token.kind == "end" else token.describe()
            self._fail_at(
                token, f"unexpected {what}: expected a number, a variable, a constant, a function call or '('"
            )
        if self.token.kind == "op" and self.token.text == "**":
            power = self._advance()
            self._enter(power)
            node = _binary("**", node, self._factor())
            self.depth -= 1
        for sign in reversed(signs):
            node = Apply(sign, _UNARY[sign], (node,))
        return node

    def _name(self) -> Node:
        token = self.token
        name = token.text
        if name in self.variables:
            self._advance()
            return Variable(name)
        if name in CONSTANTS:
            self._advance()
            return Number(CONSTANTS[name], name)
        if name in FUNCTIONS:
            return self._call()
        called = self.text[token.column - 1 + len(name) :].lstrip().startswith("(")
        close = difflib.get_close_matches(name, [*self.variables, *CONSTANTS, *FUNCTIONS], n=1, cutoff=0.75)
        hint = f" (did you mean {close[0]!r}?)" if close and len(name) > 2 else ""
        if name in ("np", "numpy", "math", "scipy"):
            hint = f" (write functions without a module prefix: exp(x), not {name}.exp(x))"
        kind = "function" if called else "name"
        self._fail_at(token, f"unknown {kind} {name!r} at column {token.column}{hint}")

    def _call(self) -> Apply:
        name_token = self._advance()
        name = name_token.text
        arity = FUNCTIONS[name][1]
        signature = _signature(name)
        takes = f"{name} takes {_plural(arity, 'argument')}, as in {signature}"
        if not (self.token.kind == "op" and self.token.text == "("):
            self._fail_at(
                name_token,
                f"function {name!r} at column {name_token.column} is used without a call: write {signature}",
            )
        open_paren = self._advance()
        self._enter(open_paren)
        args: list[Node] = []
        while True:
            if not args and self.token.kind == "op" and self.token.text == ")":
                self._fail_at(self.token, f"{takes}, but is called with none (')' at column {self.token.column})")
            args.append(self._sum(condition=name == "where" and not args))
            token = self.token
            if token.kind == "op" and token.text == ",":
                if len(args) == arity:
                    self._fail_at(
                        token, f"too many arguments: {takes}, but ',' at column {token.column} starts another one"
                    )
                self._advance()
            elif token.kind == "op" and token.text == ")":
                if len(args) < arity:
                    self._fail_at(
                        token,
                        f"too few arguments: {takes}, but ')' at column {token.column} closes the call after "
                        f"{_plural(len(args), 'argument')}",
                    )
                self._close(open_paren, "',' or ')'")
                return Apply(name, FUNCTIONS[name][0], tuple(args))
            else:
                self._close(open_paren, "',' or ')'")  # always fails

    def _close(self, open_paren: _Token, expected: str) -> None:
        token = self.token
        if token.kind == "op" and token.text == ")":
            self._advance()
            self.depth -= 1
            return
        if token.kind == "end":
            self._fail_at(
                open_paren,
                f"unclosed parenthesis: '(' at column {open_paren.column} is never closed (the formula ends at "
                f"column {token.column})",
            )
        self._unexpected_after_value(expected)

    def _unexpected_after_value(self, expected: str) -> NoReturn:
        token = self.token
        if token.kind == "op" and token.text in _COMPARISONS:
            self._fail_at(
                token,
                f"comparison {token.describe()} is not allowed here: comparisons are allowed only as the "
                f"first argument of where(condition, a, b), e.g. where(x < 0, -x, x)",
            )
        if token.kind == "op" and token.text == ")":
            self._fail_at(token, f"unmatched ')' at column {token.column}: there is no '(' for it to close")
        if token.kind == "op" and token.text == ",":
            self._fail_at(
                token, f"unexpected ',' at column {token.column}: commas only separate a function's arguments"
            )
        self._fail_at(
            token,
            f"expected an operator (+ - * / **) or {expected}, but found {token.describe()}; implicit "
            f"multiplication such as 2x or 2(x+1) is not supported (write 2*x), and only functions can be called",
        )


def _pointer(text: str, column: int, width: int, *, window: int = 72) -> str:
    """Two lines: (a window of) the formula and a caret under ``column``."""
    shown = "".join(" " if c.isspace() else c if c.isprintable() else "?" for c in text)
    index = column - 1
    start = max(0, min(index - window // 2, len(shown) - window)) if len(shown) > window else 0
    end = min(len(shown), start + window)
    prefix = "..." if start > 0 else ""
    suffix = "..." if end < len(shown) else ""
    width = max(1, min(width, end - index))
    return f"    {prefix}{shown[start:end]}{suffix}\n    {' ' * (len(prefix) + index - start)}{'^' * width}"


def parse_expression(text: str, *, variables: Sequence[str] = ("x",)) -> Expression:
    """Parse a formula in the given ``variables``; raise :class:`ExpressionError` if it is not valid."""
    if isinstance(variables, str):
        raise TypeError(f"variables must be a sequence of names, not the string {variables!r}")
    names = tuple(variables)
    for name in names:
        if not (isinstance(name, str) and _NAME.fullmatch(name)) or name in CONSTANTS or name in FUNCTIONS:
            reserved = ", ".join([*CONSTANTS, *FUNCTIONS])
            raise ValueError(f"{name!r} cannot be a formula variable: use a name other than {reserved}")
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate formula variables {names}")
    if not isinstance(text, str):
        raise ExpressionError(
            f"Invalid formula: it must be a string such as \"-x**2/2\", not {type(text).__name__} "
            f"{repr(text)[:80]}."
        )
    if len(text) > MAX_LENGTH:
        raise ExpressionError(
            f"Invalid formula: it is {len(text)} characters long and the limit is {MAX_LENGTH} "
            f"characters (from column {MAX_LENGTH + 1} on); use a `file` density for very long log densities."
        )
    try:
        tree = _Parser(text, names).parse()
    except RecursionError:  # only if the caller's own stack is already nearly exhausted
        raise ExpressionError(
            f"Invalid formula: it is nested too deeply for the Python stack; simplify it "
            f"(at most {MAX_DEPTH} levels of parentheses, calls and ** exponents)."
        ) from None
    return Expression(text, names, tree)
