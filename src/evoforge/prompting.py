"""Prompts: Jinja2 templates ``prompts/system.j2`` and ``prompts/user.j2`` rendered from a
:class:`~evoforge.mutators.base.MutationRequest`.

A ``template_dir`` overrides the built-in templates by file name (a directory holding only
``user.j2`` keeps the built-in system prompt). Templates are rendered with ``StrictUndefined``,
so a misspelt variable is an error, not an empty string. Variables available to templates:

- ``task`` (str), ``language`` (str), ``edit_mode`` ("diff" | "rewrite"), ``score_metric`` (str),
  ``minimize`` (bool), ``better`` ("higher" | "lower"), ``system_message`` (str | None),
  ``include_code_of_context`` (bool);
- ``objectives`` (list of (name, "higher" | "lower")) and ``constraints`` (list of (name, min,
  max), bounds formatted or None): a multi-objective run's (``objective.metrics``), else empty;
- ``has_markers`` (bool): the parent has EVOLVE blocks (without them the whole program may change);
- ``variant`` (a :class:`PromptVariant` or None): the prompt variant drawn for this request when
  the prompts evolve (``prompt.evolve``, see evoforge.mutators.meta_prompt); ``system.j2`` then
  shows ``variant.system`` and ``variant.guidance`` instead of ``variant_system.j2`` and
  ``variant_guidance.j2`` (the built-in text, which is also the first variant);
- ``parent`` (a program view), ``context`` and ``partners`` (lists of program views).

A program view has ``id``, ``generation``, ``code``, ``score`` (formatted str: the primary score,
else the score metric, else "n/a"), ``metrics`` (list of (name, formatted value)), ``status``
(str), ``ok`` (bool), ``reason`` (str, capped), ``feedback`` (list of (name, capped text)) and
``files``: for a program of several files (``language`` "multi-file") its files, each with
``path``, ``language``, ``code`` and ``evolvable`` (has EVOLVE blocks); else ``[]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from evoforge.edit import MARKER_START, find_blocks
from evoforge.errors import ConfigError, EditError
from evoforge.program import Program, Status
from evoforge.program_files import MULTI_FILE, language_of, unpack

if TYPE_CHECKING:
    from evoforge.config import Config
    from evoforge.mutators.base import MutationRequest

__all__ = ["PromptBuilder", "PromptVariant", "cap_text", "format_number"]

BUILTIN_TEMPLATES = Path(__file__).parent / "prompts"
EDIT_MODES = ("diff", "rewrite")


def format_number(v: Any) -> str:
    """Compact, stable formatting for scores and metrics in prompts."""
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return str(v)
        return f"{v:.6g}"
    return str(v)


def cap_text(text: str, limit: int) -> str:
    """``text`` if it fits in ``limit`` characters, else its head and tail around a note saying
    how much was left out (the tail of a traceback is usually the useful part)."""
    if len(text) <= limit:
        return text
    if limit <= 0:
        return ""
    head = limit // 3
    tail = limit - head
    omitted = len(text) - head - tail
    return f"{text[:head]}\n... [{omitted} characters omitted] ...\n{text[len(text) - tail:]}"


@dataclass(frozen=True)
class PromptVariant:
    """One variant of the evolvable instructions: the opening of the system message and the
    guidance paragraph (how to work). The fixed rules (answer format, EVOLVE markers) are the
    templates' and never part of a variant."""

    id: str
    system: str
    guidance: str


@dataclass(frozen=True)
class _FileView:
    path: str
    language: str
    code: str
    evolvable: bool  # has EVOLVE blocks; a file without is context that never changes


@dataclass(frozen=True)
class _ProgramView:
    id: int
    generation: int
    code: str
    score: str
    metrics: list[tuple[str, str]]
    status: str
    ok: bool
    reason: str
    feedback: list[tuple[str, str]]
    files: list[_FileView] = field(default_factory=list)  # a program of several files


def _files(code: str) -> list[_FileView]:
    """The files of a packed program of several files (none when ``code`` is not one)."""
    try:
        return [_FileView(p, language_of(p), text, bool(find_blocks(text)))
                for p, text in unpack(code).items()]
    except EditError:
        return []


class PromptBuilder:
    """Builds the chat messages (system + user) for one mutation request."""

    def __init__(
        self,
        template_dir: str | Path | None = None,
        system_message: str | None = None,
        feedback_chars: int = 2000,
        edit_mode: str = "diff",
        include_code_of_context: bool = True,
        score_metric: str = "combined_score",
        minimize: bool = False,
        objectives: Sequence[tuple[str, str]] = (),
        constraints: Sequence[tuple[str, float | None, float | None]] = (),
    ) -> None:
        if edit_mode not in EDIT_MODES:
            raise ConfigError(f"unknown edit mode {edit_mode!r}; valid: {', '.join(EDIT_MODES)}")
        self.template_dir = Path(template_dir) if template_dir is not None else None
        self.system_message = system_message
        self.feedback_chars = int(feedback_chars)
        self.edit_mode = edit_mode
        self.include_code_of_context = include_code_of_context
        self.score_metric = score_metric
        self.minimize = minimize
        #: several objectives (name, "higher"|"lower") and constraints (name, min, max): the
        #: prompt says the search is for a Pareto front (evoforge.selectors.pareto)
        self.objectives = [(str(n), str(b)) for n, b in objectives]
        self.constraints = [(str(n), lo, hi) for n, lo, hi in constraints]
        loaders: list[jinja2.BaseLoader] = []
        if self.template_dir is not None:
            if not self.template_dir.is_dir():
                raise ConfigError(f"prompt.template_dir {str(self.template_dir)!r} is not a "
                                  "directory; point it at a folder with system.j2 and/or user.j2")
            loaders.append(jinja2.FileSystemLoader(str(self.template_dir)))
        loaders.append(jinja2.FileSystemLoader(str(BUILTIN_TEMPLATES)))
        self._env = jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders),
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            keep_trailing_newline=False,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        try:
            self._system = self._env.get_template("system.j2")
            self._user = self._env.get_template("user.j2")
        except jinja2.TemplateError as e:
            raise ConfigError(f"cannot load prompt templates: {e}; check the Jinja2 syntax of "
                              f"the templates in {self.template_dir}") from e

    @classmethod
    def from_config(cls, cfg: Config) -> PromptBuilder:
        p = cfg.prompt
        return cls(
            template_dir=p.template_dir,
            system_message=p.system_message,
            feedback_chars=p.feedback_chars,
            edit_mode=cfg.mutator.edit_mode,
            include_code_of_context=p.include_code_of_context,
            score_metric=cfg.objective.score_metric,
            minimize=cfg.minimize,
            objectives=[(m.name, "lower" if m.direction == "minimize" else "higher")
                        for m in cfg.objective.metrics],
            constraints=[(c.name, c.min, c.max) for c in cfg.objective.constraints],
        )

    # ---------------------------------------------------------------- rendering
    def _view(self, p: Program, feedback_chars: int | None = None,
              multi_file: bool = False) -> _ProgramView:
        cap = self.feedback_chars if feedback_chars is None else feedback_chars
        feedback: list[tuple[str, str]] = []
        if cap > 0:
            for name in sorted(p.artifacts):
                text = str(p.artifacts[name]).strip("\n")
                if text.strip():
                    feedback.append((name, cap_text(text, cap)))
        ok = p.status in (Status.OK, Status.PENDING)
        return _ProgramView(
            id=p.id,
            generation=p.generation,
            code=p.code,
            score=("not known yet (being evaluated)" if p.status is Status.PENDING else
                   format_number(p.score if p.score is not None
                                 else p.metrics.get(self.score_metric))),
            metrics=[(k, format_number(p.metrics[k])) for k in sorted(p.metrics)],
            status=p.status.value,
            ok=ok,
            reason=cap_text(p.reason.strip(), max(cap, 200)) if not ok else "",
            feedback=feedback,
            files=_files(p.code) if multi_file else [],
        )

    def variables(self, request: MutationRequest, edit_mode: str | None = None,
                  feedback_chars: int | None = None) -> dict[str, Any]:
        mode = edit_mode or self.edit_mode
        cap = feedback_chars
        multi = request.language == MULTI_FILE  # views get ``files``, the templates show them
        if mode not in EDIT_MODES:
            raise ConfigError(f"unknown edit mode {mode!r}; valid: {', '.join(EDIT_MODES)}")
        return {
            "task": request.task.strip(),
            "language": request.language,
            "edit_mode": mode,
            "score_metric": self.score_metric,
            "objectives": self.objectives,
            "constraints": [(n, format_number(lo) if lo is not None else None,
                             format_number(hi) if hi is not None else None)
                            for n, lo, hi in self.constraints],
            "minimize": self.minimize,
            "better": "lower" if self.minimize else "higher",
            "system_message": self.system_message.strip() if self.system_message else None,
            "include_code_of_context": self.include_code_of_context,
            "has_markers": MARKER_START in request.parent.code,
            "variant": request.prompt_variant,
            "parent": self._view(request.parent, cap, multi),
            "context": [self._view(p, cap, multi) for p in request.context],
            "partners": [self._view(p, cap, multi) for p in request.others],
        }

    def build(self, request: MutationRequest, *, edit_mode: str | None = None,
              feedback_chars: int | None = None) -> list[dict[str, str]]:
        """System and user messages for ``request``. ``edit_mode`` and ``feedback_chars``
        override the builder's."""
        variables = self.variables(request, edit_mode, feedback_chars)
        try:
            system = self._system.render(**variables).strip() + "\n"
            user = self._user.render(**variables).strip() + "\n"
        except jinja2.TemplateError as e:
            raise ConfigError(f"prompt template failed to render: {e}; see the variables "
                              "listed in evoforge/prompting.py") from e
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    def render(self, name: str, variables: dict[str, Any]) -> str:
        """Template ``name`` (``template_dir`` first, then the built-ins), stripped."""
        try:
            return self._env.get_template(name).render(**variables).strip()
        except jinja2.TemplateError as e:
            raise ConfigError(f"prompt template {name} failed to render: {e}; see the variables "
                              "listed in evoforge/prompting.py") from e

    def default_variant(self, request: MutationRequest, variant_id: str = "v0") -> PromptVariant:
        """The built-in instructions (``variant_system.j2``, ``variant_guidance.j2``) as a
        variant: ``system.j2`` renders it exactly as it renders no variant at all."""
        variables = {**self.variables(request), "variant": None}
        return PromptVariant(variant_id, self.render("variant_system.j2", variables),
                             self.render("variant_guidance.j2", variables))

    def uses_variant(self) -> bool:
        """Whether ``system.j2`` or ``user.j2`` shows the ``variant`` variable (a custom
        template may not: then evolving the prompts changes nothing)."""
        from jinja2 import meta

        loader = self._env.loader
        if loader is None:
            return True
        for name in ("system.j2", "user.j2"):
            source = loader.get_source(self._env, name)[0]
            if "variant" in meta.find_undeclared_variables(self._env.parse(source)):
                return True
        return False
