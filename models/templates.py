"""The Jinja2 sandbox every message template is checked and rendered in.

Templates are written by managers, so they run sandboxed and immutable: no
attribute tricks, no changing the data they are given. Rendering must never
fail because one customer lacks an attribute others have, so an unknown name
renders as an empty string, as does anything looked up on it
(`{{ missing.field }}`) and an empty (None) field; the chain file validator
warns about unknown names instead. Errors that only show at render time
(`{{ 1 / 0 }}`) are the renderer's to handle per message.

What a template sees: the customer's own fields (`CUSTOMER_FIELDS`) and every
attribute by its name (`{{ city }}`); a field wins over an attribute of the
same name.

Templates are also bounded, because one that loops for minutes or renders a
gigabyte would stop the whole process (issue 11). What can be known from the
template alone is refused when it is saved (`static_problems`: `range(10**6)`,
loops nested over ranges, `'a' * 10**8`). The rest is stopped while rendering
(`RenderBudget`, `LimitExceeded`): every loop iteration and every call counts
against `MAX_STEPS` and a deadline of `RENDER_SECONDS`; operators and filters
that can make a value grow (`*`, `**`, `%`, `+`, `~`, `center`, `indent`,
`batch`, `replace`, …) are checked against `MAX_VALUE_LENGTH` before they
allocate. The caps on each rendered part are the renderer's
(`RENDERED_LIMITS`); those on templates as written are the validator's
(`SOURCE_LIMITS`). docs/chain-file.md lists them all.
"""

from __future__ import annotations

import difflib
import functools
import math
import re
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from jinja2 import ChainableUndefined, TemplateSyntaxError, Undefined, meta, nodes, pass_context
from jinja2.compiler import CodeGenerator, Frame
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from jinja2.utils import generate_lorem_ipsum

from i18n import _, customer_language

CUSTOMER_FIELDS = frozenset(
    {"external_id", "email", "phone", "first_name", "last_name", "timezone", "language"}
)

# --- Limits (docs/chain-file.md, "Limits") -------------------------------------------

# Characters of a template as written, by action key (the SMS text is also held to
# 10 SMS parts by the validator).
SOURCE_LIMITS = {"subject": 1_000, "text": 100_000, "html": 500_000, "sms": 2_000}
# Characters of each part as rendered for one customer, by part.
RENDERED_LIMITS = {"subject": 2_000, "text": 500_000, "html": 1_000_000, "sms": 2_000}
# Loop iterations plus calls (functions, methods, macros) while rendering one part.
MAX_STEPS = 100_000
# Wall-clock time rendering one part may take.
RENDER_SECONDS = 0.1
# The longest string or list an expression may build, and the largest whole number.
MAX_VALUE_LENGTH = 1_000_000
MAX_INT_BITS = 4_096
# A width in a format (`%100000000s`, `{:>100000000}`): seven digits or more.
_WIDTH_DIGITS = re.compile(r"[0-9]{7,}")


class LimitExceeded(SecurityError):
    """A template went beyond a rendering limit; the message says which, in words."""


LOOPS_TOO_LONG = "the template loops or calls more than {limit:,} times"
TOO_SLOW = "the template took longer than {seconds:g} s to render"
VALUE_TOO_LONG = "an expression would make a value longer than {limit:,} characters or items"
NUMBER_TOO_BIG = "an expression would make a number of more than {digits:,} digits"
WIDTH_TOO_BIG = "a width or count of {value} is larger than {limit:,}"
FORMAT_WIDTH_TOO_BIG = "a format asks for a width or precision of seven digits or more"


class RenderBudget:
    """What one part's rendering may still do: steps left and a deadline."""

    __slots__ = ("deadline", "steps")

    def __init__(self) -> None:
        self.steps = MAX_STEPS
        self.deadline = time.monotonic() + RENDER_SECONDS

    def tick(self) -> None:
        self.steps -= 1
        if self.steps < 0:
            raise LimitExceeded(LOOPS_TOO_LONG.format(limit=MAX_STEPS))
        if time.monotonic() > self.deadline:
            raise LimitExceeded(TOO_SLOW.format(seconds=RENDER_SECONDS))


# The budget of the rendering under way in this thread or task; None outside
# `rendering` (compile-time constant folding, tests that render directly).
_BUDGET: ContextVar[RenderBudget | None] = ContextVar("render_budget", default=None)


def start_budget() -> Any:
    """A fresh budget for one part's rendering; pass the token to `end_budget`."""
    return _BUDGET.set(RenderBudget())


def end_budget(token: Any) -> None:
    _BUDGET.reset(token)


def _tick() -> None:
    budget = _BUDGET.get()
    if budget is not None:
        budget.tick()


def _counted(iterable: Iterable[Any]) -> Iterator[Any]:
    for item in iterable:
        _tick()
        yield item


@pass_context
def _loop_items(context: Context, iterable: Any) -> Any:
    # Every {% for %} iterates through this (see `_BoundedEnvironment._generate`);
    # `pass_context` keeps the optimizer from running it at compile time.
    if _BUDGET.get() is None or isinstance(iterable, Undefined):
        return iterable
    return _counted(iterable)


def _checked_length(value: Any) -> Any:
    if isinstance(value, str | list | tuple | bytes) and len(value) > MAX_VALUE_LENGTH:
        raise LimitExceeded(VALUE_TOO_LONG.format(limit=MAX_VALUE_LENGTH))
    return value


def _checked_width(value: Any, limit: int = MAX_VALUE_LENGTH) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and value > limit:
        raise LimitExceeded(WIDTH_TOO_BIG.format(value=_number(value), limit=limit))


def _checked_format(template: Any) -> None:
    # `'%100000000s' % x`, `'{:>100000000}'.format(x)`: the width is in the text.
    if isinstance(template, str) and _WIDTH_DIGITS.search(template):
        raise LimitExceeded(FORMAT_WIDTH_TOO_BIG)


def _number(value: int) -> str:
    return f"{value:,}" if value.bit_length() < 64 else f"a {len(str(value))}-digit number"


def _sized(value: Any) -> int | None:
    return len(value) if isinstance(value, str | list | tuple) else None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _checked_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse `left operator right` if its result would be too big, before computing it."""
    if operator == "*":
        for seq, count in ((left, right), (right, left)):
            size = _sized(seq)
            if size is not None and _is_int(count) and size * count > MAX_VALUE_LENGTH:
                raise LimitExceeded(VALUE_TOO_LONG.format(limit=MAX_VALUE_LENGTH))
        if (
            _is_int(left)
            and _is_int(right)
            and left.bit_length() + right.bit_length() > MAX_INT_BITS
        ):
            raise LimitExceeded(NUMBER_TOO_BIG.format(digits=_MAX_DIGITS))
    elif operator == "**":
        big = _is_int(left) and _is_int(right) and right > 0 and abs(left) > 1
        if big and (left.bit_length() - 1) * right > MAX_INT_BITS:
            raise LimitExceeded(NUMBER_TOO_BIG.format(digits=_MAX_DIGITS))
    elif operator == "+":
        size_left, size_right = _sized(left), _sized(right)
        both = size_left is not None and size_right is not None
        if both and size_left + size_right > MAX_VALUE_LENGTH:  # type: ignore[operator]
            raise LimitExceeded(VALUE_TOO_LONG.format(limit=MAX_VALUE_LENGTH))
    elif operator == "%":
        _checked_format(left)


_MAX_DIGITS = int(MAX_INT_BITS * math.log10(2)) + 1


def _guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """The filter with its widths and counts checked before, and its result after."""

    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        for value in (*args, *kwargs.values()):
            if name in _WIDTH_FILTERS:
                _checked_width(value)
            elif name in _COUNT_FILTERS:
                _checked_width(value, _COUNT_LIMIT)
            elif name == "format":
                _checked_format(value)
        if name == "replace":
            _checked_replace(args, kwargs)
        return _checked_length(func(*args, **kwargs))

    return guarded


# Filters whose number arguments are widths of what they make, and those whose numbers
# are counts of lists they make.
_WIDTH_FILTERS = frozenset({"center", "indent", "truncate", "wordwrap"})
_COUNT_FILTERS = frozenset({"batch", "slice"})
_COUNT_LIMIT = 10_000


def _checked_replace(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    # do_replace(eval_ctx, s, old, new, count=None)
    values = [*args[1:], *kwargs.values()]
    if len(values) < 3:
        return
    text, old, new = (str(value) for value in values[:3])
    grows = len(new) - len(old)
    if grows > 0:
        times = text.count(old) if old else len(text) + 1
        if len(text) + times * grows > MAX_VALUE_LENGTH:
            raise LimitExceeded(VALUE_TOO_LONG.format(limit=MAX_VALUE_LENGTH))


_LOOP_FILTER = "chainmail_loop_items"
_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})


class _BoundedCodeGenerator(CodeGenerator):
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        # `a ~ b`: its length checked as soon as it is made.
        self.write("environment.checked_length(")
        super().visit_Concat(node, frame)
        self.write(")")


def _checked_concat(parts: Iterable[str]) -> str:
    return _checked_length("".join(parts))  # type: ignore[no-any-return]


class _Range:
    """`range()` in a template: at most MAX_STEPS numbers, each counted when iterated."""

    __slots__ = ("_numbers",)

    def __init__(self, numbers: range) -> None:
        self._numbers = numbers

    def __iter__(self) -> Iterator[int]:
        return _counted(self._numbers) if _BUDGET.get() is not None else iter(self._numbers)

    def __reversed__(self) -> Iterator[int]:
        return _counted(reversed(self._numbers))

    def __len__(self) -> int:
        return len(self._numbers)

    def __getitem__(self, index: Any) -> Any:
        found = self._numbers[index]
        return _Range(found) if isinstance(found, range) else found

    def __contains__(self, value: Any) -> bool:
        return value in self._numbers

    def __repr__(self) -> str:
        return repr(self._numbers)


def _bounded_range(*args: int) -> _Range:
    numbers = range(*args)
    if len(numbers) > MAX_STEPS:
        raise LimitExceeded(RANGE_TOO_LONG.format(count=_number(len(numbers)), limit=MAX_STEPS))
    return _Range(numbers)


def _bounded_lipsum(*args: Any, **kwargs: Any) -> Any:
    for value in (*args, *kwargs.values()):
        _checked_width(value, _LIPSUM_LIMIT)
    return generate_lorem_ipsum(*args, **kwargs)


# Paragraphs, and words in one, of placeholder text.
_LIPSUM_LIMIT = 1_000

RANGE_TOO_LONG = "range() of {count} numbers: at most {limit:,}"


class _BoundedEnvironment(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with the limits of this module's docstring."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.filters = {name: _guard_filter(name, f) for name, f in self.filters.items()}
        self.filters[_LOOP_FILTER] = _loop_items
        self.globals["range"] = _bounded_range
        self.globals["lipsum"] = _bounded_lipsum
        # Block sets, macros and `caller()` join their output with this.
        self.concat = _checked_concat  # type: ignore[method-assign]
        self.checked_length = _checked_length

    code_generator_class = _BoundedCodeGenerator

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _checked_binop(operator, left, right)
        return _checked_length(self.binop_table[operator](left, right))

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _tick()
        # A string's own method (str.format comes wrapped by the sandbox).
        method = getattr(__obj, "__wrapped__", __obj)
        owner = getattr(method, "__self__", None)
        if isinstance(owner, str):
            name = getattr(method, "__name__", "")
            if name in _WIDTH_METHODS:
                for value in (*args, *kwargs.values()):
                    _checked_width(value)
            elif name in ("format", "format_map"):
                _checked_format(owner)
        return _checked_length(super().call(__context, __obj, *args, **kwargs))

    def format_string(self, s: str, args: Any, kwargs: Any, format_func: Any = None) -> str:
        _checked_format(s)
        return _checked_length(super().format_string(s, args, kwargs, format_func))

    def _generate(
        self,
        source: nodes.Template,
        name: str | None,
        filename: str | None,
        defer_init: bool = False,
    ) -> str:
        # Each loop's items are counted as they are taken (`_loop_items`).
        for loop in source.find_all(nodes.For):
            loop.iter = nodes.Filter(
                loop.iter, _LOOP_FILTER, [], [], None, None, lineno=loop.lineno
            )
        return super()._generate(source, name, filename, defer_init)


def _empty_for_none(value: Any) -> Any:
    # A customer without a first name gets "Hi ", not "Hi None".
    return "" if value is None else value


_OPTIONS: dict[str, Any] = {
    "undefined": ChainableUndefined,
    "finalize": _empty_for_none,
    "keep_trailing_newline": True,
}
# Plain text (email text part, SMS, subject): nothing is escaped.
TEXT_ENV = _BoundedEnvironment(autoescape=False, **_OPTIONS)
# The email's HTML part: values are escaped, so a name like "<b>" stays text.
HTML_ENV = _BoundedEnvironment(autoescape=True, **_OPTIONS)

NESTED_TOO_DEEPLY = "nested too deeply"
NESTED_LOOPS_TOO_LONG = "loops nested over range() would go round {count} times: at most {limit:,}"


def template_problems(source: str) -> tuple[str | None, set[str]]:
    """Why `source` is not a usable template ("line 2: a placeholder is not closed: …")
    or None, and the names it reads from its context (empty when it has a problem);
    parsed once."""
    try:
        ast = TEXT_ENV.parse(source)
    except TemplateSyntaxError as exc:
        line = syntax_error_line(source, exc.lineno or 1, exc.message or "")
        reason = syntax_error_reason(source, exc.lineno or 1, exc.message or "")
        return _("line {line}: {reason}").format(line=line, reason=reason), set()
    except RecursionError:
        return NESTED_TOO_DEEPLY, set()
    unknown = _unknown_filter(ast)
    if unknown is not None:
        return unknown, set()
    # The sandbox has no template loader: including another template could only fail.
    if any(True for _ in meta.find_referenced_templates(ast)):
        return "a message template cannot include, import or extend other templates", set()
    try:
        _check_statically(ast, 1)
    except LimitExceeded as exc:
        line = getattr(exc, "lineno", None)
        return (f"line {line}: {exc}" if line else str(exc)), set()
    except RecursionError:
        return NESTED_TOO_DEEPLY, set()
    if not any(True for _ in ast.find_all(_DECLARING)):
        # Nothing declares a name: every name read is the customer's (and the full
        # analysis, a code generation pass, is most of the cost of a 10,000-step import).
        read = {name.name for name in ast.find_all(nodes.Name) if name.ctx == "load"}
        return None, read - TEXT_ENV.globals.keys() - {"self"}
    return None, meta.find_undeclared_variables(ast)


_DECLARING = (nodes.For, nodes.Macro, nodes.CallBlock, nodes.Assign, nodes.AssignBlock, nodes.With)


def compile_problems(source: str) -> str | None:
    """Why `source` is not a usable template, or None."""
    return template_problems(source)[0]


# --- What the template alone says -----------------------------------------------------

_UNKNOWN = object()
_STATIC_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "*": lambda a, b: a * b,
    "**": lambda a, b: a**b,
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
}


def _static(node: nodes.Node) -> Any:
    """The value of an expression made of literals only, else _UNKNOWN; LimitExceeded if
    computing it would go beyond a limit."""
    if isinstance(node, nodes.Const):
        return node.value
    if isinstance(node, nodes.Neg):
        value = _static(node.node)
        return -value if isinstance(value, int | float) else _UNKNOWN
    if isinstance(node, nodes.List | nodes.Tuple):
        items = [_static(item) for item in node.items]
        return _UNKNOWN if any(item is _UNKNOWN for item in items) else items
    if isinstance(node, nodes.BinExpr) and node.operator in _STATIC_OPERATORS:
        left, right = _static(node.left), _static(node.right)
        if left is _UNKNOWN or right is _UNKNOWN:
            return _UNKNOWN
        _checked_binop(node.operator, left, right)
        try:
            return _STATIC_OPERATORS[node.operator](left, right)
        except Exception:  # `'a' - 1`: the renderer reports it per message
            return _UNKNOWN
    if isinstance(node, nodes.Call):
        rounds = _static_range(node)
        return _UNKNOWN if rounds is None else range(rounds)
    return _UNKNOWN


def _static_range(node: nodes.Node) -> int | None:
    """How many numbers `range(…)` of literals gives; None if it is not one."""
    if not (isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name)):
        return None
    if node.node.name != "range" or node.kwargs or node.dyn_args or node.dyn_kwargs:
        return None
    args = [_static(arg) for arg in node.args]
    if not args or not all(_is_int(arg) for arg in args):
        return None
    try:
        return len(range(*args))
    except (ValueError, TypeError, OverflowError):
        return None


def _check_statically(node: nodes.Node, enclosing_rounds: int) -> None:
    """Refuse what is too big from the literals alone: ranges, loops nested over them,
    growing operators, widths given to filters and string methods."""
    try:
        if isinstance(node, nodes.Call):
            rounds = _static_range(node)
            if rounds is not None and rounds > MAX_STEPS:
                raise LimitExceeded(RANGE_TOO_LONG.format(count=f"{rounds:,}", limit=MAX_STEPS))
            method = node.node
            if isinstance(method, nodes.Getattr) and method.attr in _WIDTH_METHODS:
                for arg in node.args:
                    _checked_width(_static(arg))
        elif isinstance(node, nodes.Filter) and node.name in _WIDTH_FILTERS | _COUNT_FILTERS:
            limit = _COUNT_LIMIT if node.name in _COUNT_FILTERS else MAX_VALUE_LENGTH
            for arg in node.args:
                _checked_width(_static(arg), limit)
        elif isinstance(node, nodes.BinExpr):
            _static(node)
        if isinstance(node, nodes.For):
            _check_statically(node.iter, enclosing_rounds)
            rounds = _static_range(node.iter)
            if rounds is not None and enclosing_rounds * rounds > MAX_STEPS:
                count = enclosing_rounds * rounds
                raise LimitExceeded(
                    NESTED_LOOPS_TOO_LONG.format(count=f"{count:,}", limit=MAX_STEPS)
                )
            inner = enclosing_rounds * (rounds or 1)
            for child in (*node.body, *node.else_):
                _check_statically(child, inner)
            if node.test is not None:
                _check_statically(node.test, inner)
            return
    except LimitExceeded as exc:
        if getattr(exc, "lineno", None) is None:
            exc.lineno = node.lineno  # type: ignore[attr-defined]
        raise
    for child in node.iter_child_nodes():
        _check_statically(child, enclosing_rounds)


def template_variables(source: str) -> set[str]:
    """The names a template reads from its context; `source` must compile."""
    return meta.find_undeclared_variables(TEXT_ENV.parse(source))


def template_context(fields: Mapping[str, Any], attributes: Mapping[str, Any]) -> dict[str, Any]:
    """The names a template sees for one customer."""
    context = dict(attributes)
    context.update({name: fields.get(name) for name in CUSTOMER_FIELDS})
    return context


def customer_context(customer: Any, default_language: str) -> dict[str, Any]:
    """`template_context` of anything with the customer's fields and `attributes` as
    attributes: a `Customer`, or a row selected with those columns. `language` is the one
    the customer reads (`i18n.customer_language`: theirs, their phone's, the default),
    so a template can say `{% if language == "en" %}`, and the footer follows it."""
    fields = {name: getattr(customer, name) for name in CUSTOMER_FIELDS}
    fields["language"] = customer_language(fields["language"], fields["phone"], default_language)
    return template_context(fields, customer.attributes or {})


# --- Template problems in a manager's words -------------------------------------------
# Jinja says what its parser expected ("expected token 'end of print statement', got
# 'Friday'"); a manager needs what to write instead, on which line.

EXAMPLE_PLACEHOLDER = "{{ first_name }}"
# Filters a manager is likely to want, offered when one is misspelt.
COMMON_FILTERS = ("upper", "lower", "title", "capitalize", "trim", "default", "truncate")
_UNKNOWN_TAG = re.compile(r"Encountered unknown tag '(?P<tag>\w+)'")
_INNERMOST = re.compile(r"innermost block that needs to be closed is '(?P<tag>\w+)'")
_NAME = re.compile(r"\s*(?P<name>[^\W\d]\w*)")
_ENDS = {"if": "{% endif %}", "for": "{% endfor %}"}


def _placeholder_at(source_line: str) -> tuple[str, bool]:
    """The last `{{ … }}` opened on the line, as written, and whether it is closed."""
    start = source_line.rfind("{{")
    if start < 0:
        return "", True
    end = source_line.find("}}", start)
    if end < 0:
        return source_line[start:].rstrip(), False
    return source_line[start : end + 2], True


def _closed_example(opened: str) -> str:
    """`{{ first_name ` → `{{ first_name }}`; the usual placeholder when no name follows."""
    found = _NAME.match(opened[2:])
    return f"{{{{ {found['name']} }}}}" if found else EXAMPLE_PLACEHOLDER


def _opening_line(source: str, tag: str, before: int) -> int:
    """The line of the `{% tag %}` left open: the last one opened before line `before`
    that its end tag does not close."""
    depth = 0
    lines = source.splitlines()[:before]
    for number in range(len(lines), 0, -1):
        text = lines[number - 1]
        depth += len(re.findall(rf"{{%-?\s*end{tag}\b", text))
        depth -= len(re.findall(rf"{{%-?\s*{tag}\b", text))
        if depth < 0:
            return number
    return before


def _tag(name: str) -> str:
    return f"«{{% {name} %}}»"


def syntax_error_line(source: str, line: int, message: str) -> int:
    """Where to look: Jinja's line, except for a block left open, which Jinja finds at
    the end of the template: the line that opened it."""
    innermost = _INNERMOST.search(message)
    if innermost and innermost["tag"] in _ENDS and not _UNKNOWN_TAG.search(message):
        return _opening_line(source, innermost["tag"], line)
    return line


def syntax_error_reason(source: str, line: int, message: str) -> str:
    """What is wrong on `line` of `source`, which Jinja refused with `message`, in plain
    words with what to write instead."""
    lines = source.splitlines() or [""]
    text = lines[min(line, len(lines)) - 1]
    placeholder, closed = _placeholder_at(text)
    if "end of print statement" in message and "Expected an expression" in message:
        return _("«{placeholder}» is empty: put a name in it, like {example}").format(
            placeholder="{{ }}", example=EXAMPLE_PLACEHOLDER
        )
    if placeholder and (not closed or message.startswith("unexpected '}'")):
        return _("a placeholder is not closed: write {example}").format(
            example=_closed_example(placeholder)
        )
    if "expected token 'end of print statement'" in message and placeholder:
        return _(
            "«{placeholder}» is not a placeholder: between the braces goes one name"
            " without spaces, like {example}"
        ).format(placeholder=placeholder, example=EXAMPLE_PLACEHOLDER)
    if "end of statement block" in message and "Expected an expression" not in message:
        return _("a tag opened with {opening} is not closed with {closing}").format(
            opening="{%", closing="%}"
        )
    if message.startswith("Missing end of comment"):
        return _("a comment opened with {opening} is not closed with {closing}").format(
            opening="{#", closing="#}"
        )
    if message.startswith("unexpected char") and ("'" in message[16:18] or '"' in message):
        return _("a quotation mark in «{placeholder}» is not closed").format(
            placeholder=placeholder or text.strip()
        )
    innermost = _INNERMOST.search(message)
    unknown = _UNKNOWN_TAG.search(message)
    if innermost and innermost["tag"] in _ENDS:
        tag = innermost["tag"]
        opened = _opening_line(source, tag, line)
        if unknown:
            return _("{found} comes before the {tag} of line {opened} is closed with {end}").format(
                found=_tag(unknown["tag"]), tag=_tag(tag), opened=opened, end=_ENDS[tag]
            )
        return _("{tag} is not closed: end it with {end}").format(tag=_tag(tag), end=_ENDS[tag])
    if unknown:
        tag = unknown["tag"]
        if tag in ("endif", "else", "elif", "endfor"):
            opening = "«{% for … %}»" if tag == "endfor" else "«{% if … %}»"
            return _("{tag} has no {opening} before it").format(tag=_tag(tag), opening=opening)
        return _("there is no {tag}: a message can use {tags}").format(
            tag=_tag(tag),
            tags="{% if … %}, {% elif … %}, {% else %}, {% endif %}, {% for … %}, {% set … %}",
        )
    return _("Jinja, the template language, cannot read it: {detail}").format(
        detail=message.rstrip(".")
    )


def _unknown_filter(ast: nodes.Template) -> str | None:
    """Why a filter (`{{ name|upcase }}`) or test the template uses does not exist, or None:
    it would only fail when rendered, for every customer."""
    for node in ast.find_all((nodes.Filter, nodes.Test)):
        name = node.name
        known = TEXT_ENV.filters if isinstance(node, nodes.Filter) else TEXT_ENV.tests
        if name in known:
            continue
        close = difflib.get_close_matches(name, COMMON_FILTERS, n=1)
        if isinstance(node, nodes.Test):
            reason = _("there is no test «{name}» for «is»").format(name=name)
        elif close:
            reason = _("there is no filter «{name}»: did you mean «{close}»?").format(
                name=name, close=close[0]
            )
        else:
            reason = _("there is no filter «{name}»; filters you can use: {filters}").format(
                name=name, filters=", ".join(COMMON_FILTERS)
            )
        return _("line {line}: {reason}").format(line=node.lineno, reason=reason)
    return None


@dataclass(frozen=True)
class UnknownPlaceholder:
    """A name a template reads that no customer has: it renders empty."""

    name: str
    # Where it is first read.
    line: int
    # The known name it most likely means, or None.
    suggestion: str | None


def unknown_placeholders(source: str, known: Collection[str]) -> list[UnknownPlaceholder]:
    """The names `source` reads that are not in `known` (customer fields and attribute
    keys), in the order they first appear; nothing for a template with a problem."""
    problem, read = template_problems(source)
    if problem is not None:
        return []
    unknown = read - set(known)
    if not unknown:
        return []
    lines: dict[str, int] = {}
    for node in TEXT_ENV.parse(source).find_all(nodes.Name):
        if node.name in unknown and node.ctx == "load":
            lines.setdefault(node.name, node.lineno)
    by_lower = {name.lower(): name for name in known}
    found = []
    for name in sorted(unknown, key=lambda name: (lines.get(name, 0), name)):
        close = by_lower.get(name.lower()) or next(
            iter(difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)), None
        )
        found.append(UnknownPlaceholder(name, lines.get(name, 1), close))
    return found
