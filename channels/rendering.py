"""Templates compiled once and rendered per customer in the shared Jinja2 sandbox.

Each part is rendered within the sandbox's limits (models/templates.py: steps,
time, value sizes) and its own cap on length (`RENDERED_LIMITS`); going beyond
any of them is a RenderError saying which, like any other template failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from jinja2 import Template, TemplateSyntaxError, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from channels import texts
from models.templates import end_budget, start_budget


class RenderError(Exception):
    """A message that cannot be built; the message says which part and why."""


# Nodes that can repeat work: a template without any of them renders in time
# proportional to its length and its values, and needs no budget.
_REPEATING = (nodes.For, nodes.Call, nodes.Macro, nodes.CallBlock, nodes.Filter, nodes.BinExpr)


class CompiledTemplate:
    """One message part's template, ready to render for many customers.

    `limit` is the most characters the part may have once rendered.
    """

    def __init__(
        self, env: ImmutableSandboxedEnvironment, source: str, part: str, limit: int
    ) -> None:
        self.part = part
        self.limit = limit
        try:
            self._template, self._bounded = _compile(env, source)
        except TemplateSyntaxError as exc:
            raise RenderError(
                texts.TEMPLATE_SYNTAX.format(part=part, line=exc.lineno, message=exc.message)
            ) from None
        except RecursionError:
            raise RenderError(
                texts.TEMPLATE_RUNTIME.format(part=part, error=texts.TOO_DEEP)
            ) from None
        # `Template.render` flattens the environment's globals (a ChainMap) into
        # every context it makes, which is half the cost of rendering a short
        # template; flattened once here, they are merged with a plain dict copy.
        self._globals = dict(self._template.globals)

    def render(self, context: Mapping[str, Any]) -> str:
        variables = {**self._globals, **context}
        template = self._template
        budget = start_budget() if self._bounded else None
        try:
            pieces = template.root_render_func(template.new_context(variables, shared=True))
            rendered = self._joined(pieces) if self._bounded else "".join(pieces)
        except Exception as exc:  # a manager's template can fail in any way Python can
            error = str(exc) or type(exc).__name__
            raise RenderError(texts.TEMPLATE_RUNTIME.format(part=self.part, error=error)) from None
        finally:
            if budget is not None:
                end_budget(budget)
        if len(rendered) > self.limit:
            raise RenderError(self._too_long())
        return rendered

    def _joined(self, pieces: Any) -> str:
        # Stopped as soon as the part is too long, not once it has all been made.
        kept: list[str] = []
        length = 0
        for piece in pieces:
            length += len(piece)
            if length > self.limit:
                raise ValueError(self._too_long(with_part=False))
            kept.append(piece)
        return "".join(kept)

    def _too_long(self, *, with_part: bool = True) -> str:
        error = texts.RENDERED_TOO_LONG.format(limit=self.limit)
        return texts.TEMPLATE_RUNTIME.format(part=self.part, error=error) if with_part else error


# The engine builds a sender for every wave of a step: compiling costs far more
# than rendering, so compiled templates are kept.
@lru_cache(maxsize=256)
def _compile(env: ImmutableSandboxedEnvironment, source: str) -> tuple[Template, bool]:
    bounded = any(True for _ in env.parse(source).find_all(_REPEATING))
    return env.from_string(source), bounded
