"""`calculator`: arithmetic on a parsed syntax tree, never eval.

Only numbers, + - * / // % **, unary signs, parentheses, a few constants and math functions
are accepted; anything else (names, attributes, subscripts, strings, keywords) is refused
before evaluation. Sizes are bounded so that no expression can burn the worker's CPU: an
asyncio timeout cannot interrupt a computation, so the limits are checked before each step.
"""

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

from taskfleet.data.toolspecs import CalculatorArgs
from tool_worker.registry import ToolContext, ToolError

Number = int | float

MAX_DIGITS = 1000  # the largest integer kept exact
MAX_EXPONENT = 10_000

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
}  # fmt: skip
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.UAdd: operator.pos,
                                                         ast.USub: operator.neg}  # fmt: skip
_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "tau": math.tau}
_FUNCTIONS: dict[str, Callable[..., Number]] = {
    "sqrt": math.sqrt, "abs": abs, "round": round, "min": min, "max": max, "floor": math.floor,
    "ceil": math.ceil, "log": math.log, "log10": math.log10, "exp": math.exp, "sin": math.sin,
    "cos": math.cos, "tan": math.tan,
}  # fmt: skip


async def calculator(args: CalculatorArgs, _: ToolContext) -> dict[str, Any]:
    """The `calculator` tool: `{expression, result}`; ToolError when it is not plain arithmetic."""
    return {"expression": args.expression, "result": evaluate(args.expression)}


def evaluate(expression: str) -> Number:
    """The value of `expression`; ToolError saying why when it is not plain arithmetic."""
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise ToolError(f"not an arithmetic expression: {expression[:100]!r}") from None
    try:
        value = _eval(tree.body)
    except ZeroDivisionError:
        raise ToolError("division by zero") from None
    except (OverflowError, ValueError, TypeError, RecursionError) as exc:
        raise ToolError(f"cannot compute {expression[:100]!r}: {exc}") from None
    return _tidy(value)


def _eval(node: ast.AST) -> Number:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return _checked(node.value)
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _checked(_UNARY[type(node.op)](_eval(node.operand)))
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
        return _power(_eval(node.left), _eval(node.right))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _checked(_BINARY[type(node.op)](_eval(node.left), _eval(node.right)))
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
        and 0 < len(node.args) <= 8
    ):
        return _checked(_FUNCTIONS[node.func.id](*(_eval(a) for a in node.args)))
    raise ToolError(f"not allowed in a calculation: {ast.unparse(node)[:60]!r}")


def _power(base: Number, exponent: Number) -> Number:
    if abs(exponent) > MAX_EXPONENT:
        raise ToolError(f"exponent {exponent} is too large")
    exact = isinstance(base, int) and isinstance(exponent, int) and exponent > 0
    # The digits of an exact result, before computing it.
    if exact and abs(base) > 1 and exponent * math.log10(abs(base)) > MAX_DIGITS:
        raise ToolError(f"the result has more than {MAX_DIGITS} digits")
    return _checked(base**exponent)


def _checked(value: Any) -> Number:
    if isinstance(value, complex):
        raise ToolError("the result is not a real number")
    if isinstance(value, int) and value.bit_length() > MAX_DIGITS * 3.33:
        raise ToolError(f"the result has more than {MAX_DIGITS} digits")
    if isinstance(value, float) and not math.isfinite(value):
        raise ToolError("the result is not a finite number")
    return value  # type: ignore[no-any-return]


def _tidy(value: Number) -> Number:
    """12 significant digits for floats: 0.1 + 0.2 is 0.3, not 0.30000000000000004."""
    if isinstance(value, float):
        return float(f"{value:.12g}")
    return value
