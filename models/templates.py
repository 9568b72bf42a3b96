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
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jinja2 import ChainableUndefined, TemplateSyntaxError, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

CUSTOMER_FIELDS = frozenset(
    {"external_id", "email", "phone", "first_name", "last_name", "timezone"}
)


def _empty_for_none(value: Any) -> Any:
    # A customer without a first name gets "Hi ", not "Hi None".
    return "" if value is None else value


_OPTIONS: dict[str, Any] = {
    "undefined": ChainableUndefined,
    "finalize": _empty_for_none,
    "keep_trailing_newline": True,
}
# Plain text (email text part, SMS, subject): nothing is escaped.
TEXT_ENV = ImmutableSandboxedEnvironment(autoescape=False, **_OPTIONS)
# The email's HTML part: values are escaped, so a name like "<b>" stays text.
HTML_ENV = ImmutableSandboxedEnvironment(autoescape=True, **_OPTIONS)


def compile_problems(source: str) -> str | None:
    """Why `source` is not a usable template ("line 2: unexpected '}'"), or None."""
    try:
        ast = TEXT_ENV.parse(source)
    except TemplateSyntaxError as exc:
        return f"line {exc.lineno}: {exc.message}"
    # The sandbox has no template loader: including another template could only fail.
    if any(True for _ in meta.find_referenced_templates(ast)):
        return "a message template cannot include, import or extend other templates"
    return None


def template_variables(source: str) -> set[str]:
    """The names a template reads from its context; `source` must compile."""
    return meta.find_undeclared_variables(TEXT_ENV.parse(source))


def template_context(fields: Mapping[str, Any], attributes: Mapping[str, Any]) -> dict[str, Any]:
    """The names a template sees for one customer."""
    context = dict(attributes)
    context.update({name: fields.get(name) for name in CUSTOMER_FIELDS})
    return context


def customer_context(customer: Any) -> dict[str, Any]:
    """`template_context` of anything with the customer's fields and `attributes` as
    attributes: a `Customer`, or a row selected with those columns."""
    fields = {name: getattr(customer, name) for name in CUSTOMER_FIELDS}
    return template_context(fields, customer.attributes or {})
