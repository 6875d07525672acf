"""Problem: a directory with an initial program, an evaluator, optional config and task text."""

from __future__ import annotations

import ast
import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from evoforge.config import Layer, read_yaml
from evoforge.errors import EditError, ProblemError, ProgramFilesError
from evoforge.openevolve_config import Translation, read_config_file
from evoforge.program_files import MULTI_FILE, language_of

BUILTIN_DIR = Path(__file__).parent / "problems"



def builtin_problems() -> dict[str, Path]:
    """Built-in problems by name (directories under evoforge/problems/ with an evaluator)."""
    if not BUILTIN_DIR.is_dir():
        return {}
    return {p.name: p for p in sorted(BUILTIN_DIR.iterdir())
            if p.is_dir() and (p / "evaluator.py").is_file()}


PROBLEM_META_KEYS = ("title", "objective", "direction", "best_known", "best_known_source",
                     "baseline")  # optional: baseline_tolerance, requires {tool: Debian package}


def problem_meta(path: Path) -> dict[str, Any]:
    """A problem's ``problem.yaml`` (optional for user problems; every built-in problem has one):
    ``title``, ``objective`` (what is scored), ``direction`` (maximize/minimize), ``best_known``
    (number or null) with ``best_known_source``, ``baseline`` (the initial program's score)."""
    meta_path = path / "problem.yaml"
    if not meta_path.is_file():
        return {}
    meta = read_yaml(meta_path)
    if not isinstance(meta, dict):
        raise ProblemError(f"{meta_path}: expected a mapping of {', '.join(PROBLEM_META_KEYS)}")
    requires = meta.get("requires", {})
    if not isinstance(requires, dict) or not all(isinstance(v, str) for v in requires.values()):
        raise ProblemError(f"{meta_path}: requires must map a tool name to its Debian package, "
                           "e.g. {gcc: gcc}")
    if meta.get("direction", "maximize") not in ("maximize", "minimize"):
        raise ProblemError(f"{meta_path}: direction must be maximize or minimize, "
                           f"got {meta.get('direction')!r}")
    return meta


def missing_tools(meta: dict[str, Any]) -> dict[str, str]:
    import shutil

    return {t: pkg for t, pkg in (meta.get("requires") or {}).items() if shutil.which(t) is None}


def resolve_problem_path(name_or_path: str | Path) -> Path:
    p = Path(name_or_path).expanduser()
    if p.is_dir():
        return p.resolve()
    builtin = builtin_problems()
    if str(name_or_path) in builtin:
        return builtin[str(name_or_path)]
    names = ", ".join(builtin) or "(none)"
    raise ProblemError(
        f"problem {str(name_or_path)!r} is neither a directory nor a built-in problem. "
        f"Built-in problems: {names}. Create a new one with `evoforge init NAME`.")


def _entry_point(tree: ast.Module) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    funcs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    return funcs.get("evaluate_stage1") or funcs.get("evaluate")


def evaluator_form(evaluator: Path) -> str:
    """``"hardened"`` if the evaluator's entry point (``evaluate_stage1`` or ``evaluate``) names
    its first parameter ``candidate``: it then gets an :class:`evoforge.candidate.Candidate` and
    the program runs in a separate sandbox. Otherwise ``"plain"`` (OpenEvolve's
    ``evaluate(program_path)``: the program runs inside the evaluator's process)."""
    try:
        tree = ast.parse(evaluator.read_text(encoding="utf-8"), filename=str(evaluator))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return "plain"  # the worker reports the real problem
    fn = _entry_point(tree)
    params = [*fn.args.posonlyargs, *fn.args.args] if fn is not None else []
    return "hardened" if params and params[0].arg == "candidate" else "plain"


def _load_tree(initial: Path) -> str:
    """The packed text of an ``initial_program/`` directory, after checking every file: the
    tree's rules (evoforge.program_files), balanced EVOLVE markers per file, Python files that
    parse, and at least one file with blocks (files without are context that never changes)."""
    from evoforge.edit import find_blocks, python_syntax_error
    from evoforge.program_files import language_of, pack, read_tree

    try:
        files = read_tree(initial)
    except (ProgramFilesError, OSError) as e:
        raise ProblemError(f"{initial}: {e}") from e
    evolvable = []
    for rel, text in files.items():
        try:
            if find_blocks(text):
                evolvable.append(rel)
        except EditError as e:
            raise ProblemError(f"{initial / rel}: {e}") from e
        if language_of(rel) == "python":
            err = python_syntax_error(text)
            if err:
                raise ProblemError(f"{initial / rel}: the initial program does not parse ({err})")
    if not evolvable:
        raise ProblemError(
            f"{initial}: no file has EVOLVE-BLOCK-START/-END markers; in a program of several "
            "files only the marked regions evolve (files without markers are context), so mark "
            "at least one region")
    return pack(files)


def in_directory_form(path: str | Path, initial_program: str | Path, evaluator: str | Path) -> bool:
    """Whether these files are a problem directory's own (``initial_program.*`` and
    ``evaluator.py`` directly in ``path``), which ``Problem.load(path)`` finds by itself."""
    init = Path(initial_program)
    return (Path(evaluator) == Path(path) / "evaluator.py" and init.parent == Path(path)
            and init.stem == "initial_program")


@dataclass(frozen=True)
class Problem:
    name: str
    path: Path
    initial_program: Path
    initial_code: str
    evaluator: Path
    language: str
    task: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)  # problem.yaml, see problem_meta()
    # config.yaml as read (an OpenEvolve config translated: its warnings, its keys' origins)
    config_file: Translation | None = field(default=None, compare=False, repr=False)

    @property
    def as_files(self) -> bool:
        """Whether the problem was given as OpenEvolve's pair of files (any names) rather than
        as a problem directory (its ``initial_program.*`` and ``evaluator.py``)."""
        return not in_directory_form(self.path, self.initial_program, self.evaluator)

    def config_layer(self) -> Layer:
        """``config`` as a config layer named after the file it came from."""
        t = self.config_file
        if t is not None and t.config is self.config:
            return t.layer()
        return Layer(self.config, str(self.path / "config.yaml"))

    def report_config(self) -> None:
        """Log what translating config.yaml from OpenEvolve's format left out (at run start)."""
        if self.config_file is not None and self.config_file.config is self.config:
            self.config_file.report()

    @property
    def multi_file(self) -> bool:
        """The initial program is a directory: programs are trees of files, packed into one
        string (see :mod:`evoforge.program_files`)."""
        return self.language == MULTI_FILE

    @property
    def program_name(self) -> str:
        """File name a candidate is written as (same suffix as the initial program); for a
        program of several files, ``"program/"``: the directory its files are written into."""
        if self.multi_file:
            return "program/"
        return "program" + self.initial_program.suffix

    def fingerprint(self) -> str:
        """Hash of the initial program and evaluator, to warn when a resumed run's problem changed."""
        h = hashlib.sha256()
        if self.multi_file:
            h.update(self.initial_code.encode("utf-8", "surrogatepass"))
        else:
            h.update(self.initial_program.read_bytes())
        h.update(self.evaluator.read_bytes())
        return h.hexdigest()[:16]

    def missing_tools(self) -> dict[str, str]:
        """Tools this problem's evaluator runs (``requires`` in problem.yaml) that are not on PATH,
        with the Debian package that provides each."""
        return missing_tools(self.meta)

    def check_tools(self) -> None:
        """Raise ProblemError naming the install command if a required tool is missing."""
        missing = self.missing_tools()
        if missing:
            raise ProblemError(
                f"{self.name} needs {', '.join(sorted(missing))} on PATH: "
                f"apt-get install {' '.join(sorted(set(missing.values())))}"
            )

    @property
    def form(self) -> str:
        """``"hardened"`` (the evaluator calls the candidate through the sandbox) or ``"plain"``."""
        return evaluator_form(self.evaluator)

    @classmethod
    def from_files(cls, initial_program: str | Path, evaluator: str | Path) -> Problem:
        """OpenEvolve's form: an initial program and an evaluator given as files (any names).
        The evaluator's directory is the problem directory (its sibling modules and data stay
        importable); no config.yaml is read implicitly (pass ``--config``, as with OpenEvolve)."""
        init, ev = Path(initial_program).expanduser(), Path(evaluator).expanduser()
        for f, what in ((init, "initial program"), (ev, "evaluator")):
            if not f.is_file():
                raise ProblemError(f"{f}: {what} not found (expected a file; `evoforge run DIR` "
                                   "takes a problem directory instead)")
        if ev.suffix != ".py":
            raise ProblemError(f"{ev}: the evaluator must be a Python file (.py)")
        prob = cls.load(ev.resolve().parent, initial_program=init.resolve(),
                        evaluator=ev.resolve())
        return replace(prob, config={})

    @classmethod
    def load(cls, name_or_path: str | Path, *, initial_program: Path | None = None,
             evaluator: Path | None = None) -> Problem:
        path = resolve_problem_path(name_or_path)
        candidates = ([initial_program] if initial_program is not None else
                      sorted(p for p in path.glob("initial_program*")
                             if p.is_file() and p.name.startswith("initial_program.")
                             or p.is_dir() and p.name == "initial_program"))
        if not candidates:
            raise ProblemError(
                f"{path}: no initial_program.* found. A problem directory needs the starting program "
                "(e.g. initial_program.py with EVOLVE-BLOCK-START/-END markers, or a directory "
                "initial_program/ holding a program of several files) and evaluator.py; "
                "`evoforge init NAME` scaffolds one.")
        if len(candidates) > 1:
            raise ProblemError(f"{path}: several initial programs ({', '.join(p.name for p in candidates)});"
                               " keep exactly one.")
        initial = candidates[0]
        evaluator = evaluator or path / "evaluator.py"
        if not evaluator.is_file():
            raise ProblemError(
                f"{path}: no evaluator.py. Write one with `def evaluate(program_path) -> dict` returning "
                "at least 'combined_score' (see `evoforge init` for a working example).")
        try:
            tree = ast.parse(evaluator.read_text(), filename=str(evaluator))
        except SyntaxError as e:
            raise ProblemError(f"{evaluator}: syntax error at line {e.lineno}: {e.msg}") from e
        if _entry_point(tree) is None:
            raise ProblemError(f"{evaluator}: defines no top-level `evaluate(candidate)` (hardened "
                               "form) or `evaluate(program_path)` (plain form), nor "
                               "`evaluate_stage1` for a cascade.")
        if initial.is_dir():
            code, language = _load_tree(initial), MULTI_FILE
        else:
            try:
                code = initial.read_text()
            except UnicodeDecodeError as e:
                raise ProblemError(f"{initial}: not UTF-8 text") from e
            from evoforge.edit import find_blocks, python_syntax_error

            try:
                find_blocks(code)
            except EditError as e:
                raise ProblemError(f"{initial}: {e}") from e
            language = language_of(initial.name)
            if language == "python":
                err = python_syntax_error(code)
                if err:
                    raise ProblemError(f"{initial}: the initial program does not parse ({err})")
        cfg_path = path / "config.yaml"
        config_file = read_config_file(cfg_path) if cfg_path.is_file() else None
        config = config_file.config if config_file is not None else {}
        readme = path / "README.md"
        task = readme.read_text() if readme.is_file() else ""
        return cls(name=path.name, path=path, initial_program=initial, initial_code=code,
                   evaluator=evaluator, language=language, task=task, config=config,
                   meta=problem_meta(path), config_file=config_file)
