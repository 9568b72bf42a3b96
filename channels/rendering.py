"""Templates compiled once and rendered per customer in the shared Jinja2 sandbox."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from jinja2 import Template, TemplateSyntaxError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from channels import texts


class RenderError(Exception):
    """A message that cannot be built; the message says which part and why."""


class CompiledTemplate:
    """One message part's template, ready to render for many customers."""

    def __init__(self, env: ImmutableSandboxedEnvironment, source: str, part: str) -> None:
        self.part = part
        try:
            self._template = _compile(env, source)
        except TemplateSyntaxError as exc:
            raise RenderError(
                texts.TEMPLATE_SYNTAX.format(part=part, line=exc.lineno, message=exc.message)
            ) from None
        # `Template.render` flattens the environment's globals (a ChainMap) into
        # every context it makes, which is half the cost of rendering a short
        # template; flattened once here, they are merged with a plain dict copy.
        self._globals = dict(self._template.globals)

    def render(self, context: Mapping[str, Any]) -> str:
        variables = {**self._globals, **context}
        template = self._template
        try:
            return "".join(template.root_render_func(template.new_context(variables, shared=True)))
        except Exception as exc:  # a manager's template can fail in any way Python can
            error = str(exc) or type(exc).__name__
            raise RenderError(texts.TEMPLATE_RUNTIME.format(part=self.part, error=error)) from None


# The engine builds a sender for every wave of a step: compiling costs far more
# than rendering, so compiled templates are kept.
@lru_cache(maxsize=256)
def _compile(env: ImmutableSandboxedEnvironment, source: str) -> Template:
    return env.from_string(source)
