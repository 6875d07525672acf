"""ModelFreeMutator: small random AST-level edits to the EVOLVE blocks, no LLM needed.

For Python each block's content is dedented, parsed with :mod:`ast`, mutated, unparsed with
``ast.unparse`` and re-indented with the block's original indentation, then spliced back with
:func:`evoforge.edit.replace_block_contents`, so text outside the blocks and the marker lines never
change. A child is only returned if the whole program still compiles. Note: ``ast.unparse`` drops
comments and normalises formatting, so comments inside a *mutated* block are lost (blocks the
child does not change keep their text byte-for-byte). This is accepted.

Operators (1..``max_edits`` per child, chosen at random):

- ``literal``: perturb a numeric literal (floats: log-normal multiplicative or small additive noise,
  sometimes a larger jump; ints: +/-1 or +/-2, a non-negative int never turns negative).
- ``swap_op``: swap a binary/comparison/boolean operator for a related one (``+``/``-``,
  ``*``/``/``, ``<``/``<=``, ``and``/``or``, ...).
- ``duplicate``, ``delete``, ``swap_stmts``: duplicate, delete (bodies stay non-empty) or swap two
  adjacent statements.
- ``crossover`` (when the request has partners): take whole blocks, same-named top-level
  definitions/assignments, or statements of same-named functions from a partner.

Other languages get a regex perturbation of numeric literals inside the blocks. A program of
several files (``language`` "multi-file") has one of its files with blocks mutated per child, each
by its own language's rules. All randomness
comes from ``request.rng``: the same request with the same seed gives the same child.
"""

from __future__ import annotations

import ast
import copy
import math
import random
import re
import textwrap
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace

from evoforge.edit import block_contents, find_blocks, python_syntax_error, replace_block_contents
from evoforge.errors import EditError
from evoforge.mutators.base import MutationOutcome, MutationRequest, Mutator
from evoforge.program import MutationInfo
from evoforge.program_files import MULTI_FILE, language_of, pack, unpack

_PYTHON = {"python", "py", "python3"}
_TRIES_PER_EDIT = 8

_BINOP_SWAPS: dict[type, tuple[type, ...]] = {
    ast.Add: (ast.Sub,),
    ast.Sub: (ast.Add,),
    ast.Mult: (ast.Div,),
    ast.Div: (ast.Mult, ast.FloorDiv),
    ast.FloorDiv: (ast.Div,),
    ast.LShift: (ast.RShift,),
    ast.RShift: (ast.LShift,),
    ast.BitAnd: (ast.BitOr,),
    ast.BitOr: (ast.BitAnd,),
}
_CMP_SWAPS: dict[type, tuple[type, ...]] = {
    ast.Lt: (ast.LtE, ast.Gt),
    ast.LtE: (ast.Lt, ast.GtE),
    ast.Gt: (ast.GtE, ast.Lt),
    ast.GtE: (ast.Gt, ast.LtE),
    ast.Eq: (ast.NotEq,),
    ast.NotEq: (ast.Eq,),
}
_BOOL_SWAPS: dict[type, tuple[type, ...]] = {ast.And: (ast.Or,), ast.Or: (ast.And,)}
_SYMBOLS: dict[type, str] = {
    ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//",
    ast.LShift: "<<", ast.RShift: ">>", ast.BitAnd: "&", ast.BitOr: "|",
    ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=",
    ast.And: "and", ast.Or: "or",
}
# Statements that are never duplicated, deleted or swapped: they define the program's interface
# or scoping, and editing them is almost always a wasted evaluation.
_PROTECTED = (
    ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom,
    ast.Global, ast.Nonlocal,
)
_BODY_FIELDS = ("body", "orelse", "finalbody")


# --------------------------------------------------------------------------- numeric values


def perturb_float(v: float, rng: random.Random) -> float:
    """A nearby float (rounded to 6 significant digits), different from ``v``."""
    for _ in range(10):
        r = rng.random()
        if v == 0.0:
            w = rng.gauss(0.0, 0.1)
        elif r < 0.55:
            w = v * math.exp(rng.gauss(0.0, 0.1))
        elif r < 0.85:
            w = v + rng.gauss(0.0, 0.05 * abs(v))
        elif r < 0.95:
            w = v * math.exp(rng.gauss(0.0, 1.0))
        else:
            w = -v
        if math.isfinite(w):
            w = float(f"{w:.6g}")
            if w != v:
                return w
    return v + 1.0 if math.isfinite(v) else v


def perturb_int(v: int, rng: random.Random) -> int:
    """``v`` +/- 1 or 2; a non-negative ``v`` stays non-negative."""
    d = rng.choice((-2, -1, 1, 2))
    w = v + d
    if v >= 0 and w < 0:
        w = v + abs(d)
    return w


# --------------------------------------------------------------------------- AST helpers


def _replace_child(root: ast.AST, old: ast.AST, new: ast.AST) -> bool:
    for node in ast.walk(root):
        for name, value in ast.iter_fields(node):
            if value is old:
                setattr(node, name, new)
                return True
            if isinstance(value, list):
                for i, item in enumerate(value):
                    if item is old:
                        value[i] = new
                        return True
    return False


def _stmt_lists(tree: ast.AST) -> list[list[ast.stmt]]:
    out: list[list[ast.stmt]] = []
    for node in ast.walk(tree):
        for f in _BODY_FIELDS:
            body = getattr(node, f, None)
            if isinstance(body, list) and body and isinstance(body[0], ast.stmt):
                out.append(body)
    return out


def _is_docstring(stmt: ast.stmt) -> bool:
    return (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Constant)
        and isinstance(stmt.value.value, str)
    )


def _editable(stmt: ast.stmt) -> bool:
    return not isinstance(stmt, _PROTECTED) and not _is_docstring(stmt)


def _line(node: ast.AST) -> int:
    return getattr(node, "lineno", 0) or 0


def _num_sites(tree: ast.AST) -> list[tuple[ast.AST, ast.Constant, int]]:
    """Numeric literal sites: (node to replace, the constant, sign). Skips subscript indexes."""
    nodes = list(ast.walk(tree))
    skip: set[int] = set()
    for node in nodes:
        if isinstance(node, ast.Subscript) and not isinstance(node.slice, ast.Constant | ast.Name):
            skip.update(id(sub) for sub in ast.walk(node.slice))
        elif isinstance(node, ast.Subscript):
            skip.add(id(node.slice))
    sites: list[tuple[ast.AST, ast.Constant, int]] = []
    for node in nodes:
        if id(node) in skip:
            continue
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and _is_number(
            node.operand
        ):
            assert isinstance(node.operand, ast.Constant)
            sites.append((node, node.operand, -1))
            skip.add(id(node.operand))  # BFS: the operand comes later
        elif _is_number(node):
            assert isinstance(node, ast.Constant)
            sites.append((node, node, 1))
    sites.sort(key=lambda s: (_line(s[1]), getattr(s[1], "col_offset", 0)))
    return sites


def _is_number(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Constant)
        and isinstance(node.value, int | float)
        and not isinstance(node.value, bool)
    )


def _number_node(value: float | int, like: ast.AST) -> ast.AST:
    if value < 0:
        new: ast.AST = ast.UnaryOp(op=ast.USub(), operand=ast.Constant(value=-value))
    else:
        new = ast.Constant(value=value)
    return ast.copy_location(new, like)


def _key(stmt: ast.stmt) -> str | None:
    """A name for crossover: defs and classes by name, simple assignments by target."""
    if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return f"def {stmt.name}"
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
        t = stmt.targets[0]
        if isinstance(t, ast.Name):
            return f"{t.id} ="
    if isinstance(stmt, ast.AnnAssign | ast.AugAssign) and isinstance(stmt.target, ast.Name):
        return f"{stmt.target.id} ="
    return None


# --------------------------------------------------------------------------- block state


@dataclass
class _Block:
    index: int  # block index in the program
    first_line: int  # 1-based program line of the block's first content line
    content: str  # original text
    indent: str
    source: str  # current dedented source of the block (unparsed after an edit)
    tree: ast.Module | None  # None if the content does not parse on its own
    changed: bool = False  # differs from the parent (render from the tree)
    touched: bool = False  # edited by the operator being tried
    _pending: str | None = None  # unparsed text of the tried edit

    def mark(self) -> None:
        self.changed = self.touched = True

    def commit(self) -> None:
        """Accept the tried edit: the tree becomes the block's source."""
        if self.touched and self.tree is not None:
            self.source = self._pending if self._pending is not None else ast.unparse(self.tree)
        self.touched, self._pending = False, None

    def rollback(self, changed: bool) -> None:
        """Undo the tried edit by re-parsing the last accepted source (cheaper than deepcopy)."""
        if self.touched:
            self.tree = _parse(self.source)
        self.changed, self.touched, self._pending = changed, False, None

    def render(self) -> str:
        if not self.changed or self.tree is None:
            return self.content
        if self.touched:
            text = self._pending = ast.unparse(self.tree)
        else:
            text = self.source
        if not text.strip():
            return ""
        return textwrap.indent(text, self.indent) + "\n"


def _parse(text: str) -> ast.Module | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def _common_indent(text: str) -> str:
    indents = [_lead(ln) for ln in text.split("\n") if ln.strip()]
    if not indents:
        return ""
    common = indents[0]
    for ind in indents[1:]:
        while not ind.startswith(common):
            common = common[:-1]
    return common


def _lead(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" \t"))]


def _blocks_of(code: str) -> list[_Block]:
    blocks = find_blocks(code)
    contents = block_contents(code)
    out = []
    for i, content in enumerate(contents):
        first = blocks[i].start + 2 if blocks else 1
        indent = _common_indent(content)
        source = textwrap.dedent(content)
        tree = _parse(source) if content.strip() else None
        out.append(_Block(i, first, content, indent, source, tree))
    return out


# --------------------------------------------------------------------------- the mutator

_Op = Callable[[list[_Block], random.Random], str | None]


class ModelFreeMutator(Mutator):
    """Random AST-level edits to the EVOLVE blocks (Python), regex literal edits otherwise.

    Deterministic given ``request.rng``. Comments inside a mutated Python block are dropped by
    ``ast.unparse``; untouched blocks keep their text exactly.
    """

    name = "model_free"
    uses_llm = False

    def __init__(self, max_edits: int = 3) -> None:
        if max_edits < 1:
            raise ValueError(f"max_edits must be at least 1, got {max_edits}")
        self.max_edits = max_edits

    async def mutate(self, request: MutationRequest) -> MutationOutcome:
        return self.mutate_sync(request)

    def mutate_sync(self, request: MutationRequest) -> MutationOutcome:
        """The same as :meth:`mutate`, without the event loop."""
        code = request.parent.code
        if request.language == MULTI_FILE:
            return self._mutate_files(request)
        try:
            find_blocks(code)
        except EditError as e:
            return self._fail(f"cannot mutate: {e}")
        if request.language.lower() in _PYTHON:
            err = python_syntax_error(code)
            if err is not None:
                return self._fail(f"the parent does not compile ({err}); nothing to mutate")
            return self._mutate_python(code, request)
        return self._mutate_text(code, request, check_python=False)

    def _mutate_files(self, request: MutationRequest) -> MutationOutcome:
        """A program of several files: one of its files with EVOLVE blocks, drawn at random
        (the next on failure), is mutated as a program of its own language (Python by AST
        edits, with crossover from the partners' same file); the others stay as they are."""
        try:
            files = unpack(request.parent.code)
            partners = [(o, unpack(o.code)) for o in request.others]
            order = [p for p, text in files.items() if find_blocks(text)]
        except EditError as e:
            return self._fail(f"cannot mutate: {e}")
        request.rng.shuffle(order)
        why: list[str] = []
        for path in order:
            sub = replace(
                request, language=language_of(path),
                parent=replace(request.parent, code=files[path]),
                others=tuple(replace(o, code=f[path]) for o, f in partners if path in f))
            out = self.mutate_sync(sub)
            if out.code is not None:
                info = replace(out.info, note=f"{path}: {out.info.note}")
                return MutationOutcome(pack({**files, path: out.code}), info)
            why.append(f"{path}: {out.info.note}")
        return self._fail("; ".join(why) or "no file has EVOLVE blocks; nothing to mutate")

    @staticmethod
    def _fail(note: str) -> MutationOutcome:
        return MutationOutcome(None, MutationInfo(mutator="model_free", note=note))

    @staticmethod
    def _ok(code: str, kinds: list[str], notes: list[str]) -> MutationOutcome:
        return MutationOutcome(
            code,
            MutationInfo(mutator="model_free", edit_kind=",".join(kinds), note="; ".join(notes)),
        )

    def _mutate_text(self, code: str, request: MutationRequest, check_python: bool
                     ) -> MutationOutcome:
        result = _mutate_text(code, request.rng, self.max_edits, check_python)
        if isinstance(result, str):
            return self._fail(result)
        child, notes = result
        return self._ok(child, ["literal"] * len(notes), notes)

    # ----------------------------------------------------------------- python

    def _mutate_python(self, code: str, request: MutationRequest) -> MutationOutcome:
        rng = request.rng
        blocks = _blocks_of(code)
        if not any(b.tree is not None and b.tree.body for b in blocks):
            if any(b.content.strip() for b in blocks):  # fragments: numbers only
                return self._mutate_text(code, request, check_python=True)
            return self._fail("the EVOLVE blocks are empty; nothing to mutate")

        partner = self._partner_blocks(request, blocks)
        ops: list[tuple[str, float, _Op]] = [
            ("literal", 4.0, self._op_literal),
            ("swap_op", 1.5, self._op_swap_op),
            ("duplicate", 1.0, self._op_duplicate),
            ("delete", 1.0, self._op_delete),
            ("swap_stmts", 1.0, self._op_swap_stmts),
        ]
        if partner is not None:
            partner_blocks, partner_id = partner

            def crossover(bs: list[_Block], r: random.Random) -> str | None:
                return self._op_crossover(bs, partner_blocks, partner_id, r)

            ops.append(("crossover", 4.0, crossover))

        target = rng.randint(1, self.max_edits)
        kinds: list[str] = []
        notes: list[str] = []
        dead: set[str] = set()  # ops with nothing to act on
        tries = 0
        while len(kinds) < target and tries < _TRIES_PER_EDIT * target:
            tries += 1
            live = [o for o in ops if o[0] not in dead]
            if not live:
                break
            name, _, op = rng.choices(live, weights=[o[1] for o in live])[0]
            saved = [b.changed for b in blocks]
            try:
                note = op(blocks, rng)
                candidate = replace_block_contents(code, [b.render() for b in blocks])
            except (ValueError, TypeError, AttributeError, RecursionError, EditError):
                note, candidate = None, code
            if note is None:
                dead.add(name)
            if note is None or python_syntax_error(candidate) is not None:
                for b, changed in zip(blocks, saved, strict=True):
                    b.rollback(changed)
                continue
            for b in blocks:
                b.commit()
            kinds.append(name)
            notes.append(note)
            if name == "crossover":  # at most once per child
                dead.add(name)

        if not kinds:
            return self._fail(
                "no edit applied: the blocks have no numeric literals, operators or statements "
                "that can change without breaking the program"
            )
        child = replace_block_contents(code, [b.render() for b in blocks])
        if child == code:
            return self._fail("the edits cancelled out; the child equals the parent")
        return self._ok(child, kinds, notes)

    def _partner_blocks(
        self, request: MutationRequest, blocks: list[_Block]
    ) -> tuple[list[_Block], int] | None:
        candidates = []
        for other in request.others:
            if other.code == request.parent.code:
                continue
            try:
                ob = _blocks_of(other.code)
            except EditError:
                continue
            if len(ob) == len(blocks) and any(o.tree is not None for o in ob):
                candidates.append((ob, other.id))
        if not candidates:
            return None
        return request.rng.choice(candidates)

    # ----------------------------------------------------------------- operators

    @staticmethod
    def _op_literal(blocks: list[_Block], rng: random.Random) -> str | None:
        sites = [(b, s) for b in blocks if b.tree is not None for s in _num_sites(b.tree)]
        if not sites:
            return None
        b, (node, const, sign) = rng.choice(sites)
        assert b.tree is not None
        value = const.value
        assert isinstance(value, int | float)
        old = sign * value
        new: float | int
        if isinstance(old, float):
            new = perturb_float(old, rng)
        else:
            new = perturb_int(old, rng)
        replacement = _number_node(new, node)
        if not _replace_child(b.tree, node, replacement):
            return None
        b.mark()
        return f"literal {old!r} -> {new!r} at line {b.first_line + _line(node) - 1}"

    @staticmethod
    def _op_swap_op(blocks: list[_Block], rng: random.Random) -> str | None:
        sites: list[tuple[_Block, ast.AST, int]] = []
        for b in blocks:
            if b.tree is None:
                continue
            for node in ast.walk(b.tree):
                if isinstance(node, ast.BinOp | ast.AugAssign) and type(node.op) in _BINOP_SWAPS:
                    sites.append((b, node, -1))
                elif isinstance(node, ast.BoolOp) and type(node.op) in _BOOL_SWAPS:
                    sites.append((b, node, -1))
                elif isinstance(node, ast.Compare):
                    for i, op in enumerate(node.ops):
                        if type(op) in _CMP_SWAPS:
                            sites.append((b, node, i))
        if not sites:
            return None
        b, node, i = rng.choice(sites)
        if isinstance(node, ast.Compare):
            old_op: ast.AST = node.ops[i]
            new_op = rng.choice(_CMP_SWAPS[type(old_op)])()
            node.ops[i] = new_op
        else:
            assert isinstance(node, ast.BinOp | ast.AugAssign | ast.BoolOp)
            old_op = node.op
            table = _BOOL_SWAPS if isinstance(node, ast.BoolOp) else _BINOP_SWAPS
            new_op = rng.choice(table[type(old_op)])()
            node.op = new_op  # type: ignore[assignment]
        b.mark()
        line = b.first_line + _line(node) - 1
        return f"swap_op {_SYMBOLS[type(old_op)]} -> {_SYMBOLS[type(new_op)]} at line {line}"

    @staticmethod
    def _stmt_sites(blocks: list[_Block], min_len: int) -> list[tuple[_Block, list[ast.stmt]]]:
        return [
            (b, body)
            for b in blocks
            if b.tree is not None
            for body in _stmt_lists(b.tree)
            if len(body) >= min_len
        ]

    def _op_duplicate(self, blocks: list[_Block], rng: random.Random) -> str | None:
        sites = [
            (b, body, i)
            for b, body in self._stmt_sites(blocks, 1)
            for i, s in enumerate(body)
            if _editable(s) and not isinstance(s, ast.Return | ast.Raise | ast.Pass)
        ]
        if not sites:
            return None
        b, body, i = rng.choice(sites)
        body.insert(i + 1, copy.deepcopy(body[i]))
        b.mark()
        return f"duplicate statement at line {b.first_line + _line(body[i]) - 1}"

    def _op_delete(self, blocks: list[_Block], rng: random.Random) -> str | None:
        sites = [
            (b, body, i)
            for b, body in self._stmt_sites(blocks, 2)
            for i, s in enumerate(body)
            if _editable(s)
        ]
        if not sites:
            return None
        b, body, i = rng.choice(sites)
        line = b.first_line + _line(body[i]) - 1
        del body[i]
        b.mark()
        return f"delete statement at line {line}"

    def _op_swap_stmts(self, blocks: list[_Block], rng: random.Random) -> str | None:
        sites = [
            (b, body, i)
            for b, body in self._stmt_sites(blocks, 2)
            for i in range(len(body) - 1)
            if _editable(body[i]) and _editable(body[i + 1])
            and ast.dump(body[i]) != ast.dump(body[i + 1])
        ]
        if not sites:
            return None
        b, body, i = rng.choice(sites)
        line = b.first_line + _line(body[i]) - 1
        body[i], body[i + 1] = body[i + 1], body[i]
        b.mark()
        return f"swap statements at line {line} and the next"

    @staticmethod
    def _op_crossover(
        blocks: list[_Block], partner: list[_Block], partner_id: int, rng: random.Random
    ) -> str | None:
        # Candidate moves: whole blocks (when there are several), same-named top-level
        # statements, and statement-level mixes of same-named functions.
        moves: list[tuple[str, Callable[[], None]]] = []
        for b, p in zip(blocks, partner, strict=True):
            if b.tree is None or p.tree is None:
                continue
            if len(blocks) > 1 and ast.dump(b.tree) != ast.dump(p.tree):
                moves.append((f"block {b.index + 1}", _setter(b, p.source)))
            theirs: dict[str, ast.stmt] = {}
            for s in p.tree.body:
                k = _key(s)
                if k is not None and k not in theirs:
                    theirs[k] = s
            for j, s in enumerate(b.tree.body):
                k = _key(s)
                if k is None or k not in theirs or ast.dump(s) == ast.dump(theirs[k]):
                    continue
                other = theirs[k]
                moves.append((f"'{k}'", _put(b, b.tree.body, j, other)))
                if isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef) and isinstance(
                    other, ast.FunctionDef | ast.AsyncFunctionDef
                ):
                    moves.append((f"part of '{k}'", _mix_bodies(b, s, other, rng)))
        if not moves:
            return None
        chosen = [m for m in moves if rng.random() < 0.5] or [rng.choice(moves)]
        if len(chosen) == len(moves) and len(moves) > 1:  # keep something of our own
            chosen.pop(rng.randrange(len(chosen)))
        for _, apply in chosen:
            apply()
        what = ", ".join(label for label, _ in chosen)
        return f"crossover with program {partner_id}: took {what}"


def _setter(b: _Block, source: str) -> Callable[[], None]:
    def apply() -> None:
        b.tree = _parse(source)
        b.mark()

    return apply


def _put(b: _Block, body: list[ast.stmt], j: int, stmt: ast.stmt) -> Callable[[], None]:
    original = body[j]

    def apply() -> None:
        # The block's tree may have been replaced or the list edited by another move.
        if b.tree is not None and j < len(body) and body[j] is original:
            body[j] = copy.deepcopy(stmt)
            b.mark()

    return apply


def _mix_bodies(
    b: _Block, ours: ast.FunctionDef | ast.AsyncFunctionDef,
    theirs: ast.FunctionDef | ast.AsyncFunctionDef, rng: random.Random,
) -> Callable[[], None]:
    """Uniform crossover of the statements of two same-named functions, position by position."""
    n = max(len(ours.body), len(theirs.body))
    picks = [rng.random() < 0.5 for _ in range(n)]
    tail_from_theirs = rng.random() < 0.5

    def apply() -> None:
        mixed: list[ast.stmt] = []
        for i in range(n):
            if i < len(ours.body) and i < len(theirs.body):
                mixed.append(copy.deepcopy(theirs.body[i]) if picks[i] else ours.body[i])
            elif i < len(theirs.body):
                if tail_from_theirs:
                    mixed.append(copy.deepcopy(theirs.body[i]))
            elif not tail_from_theirs:
                mixed.append(ours.body[i])
        if mixed:
            ours.body = mixed
            b.mark()

    return apply


# --------------------------------------------------------------------------- other languages

_NUMBER = re.compile(
    r"(?<![\w.])(\d+\.\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\d+)(?![\w.])"
)
_COMMENT_LEAD = ("#", "//", "--", ";", "%", "/*", "*")


def _format_float(w: float, like: str) -> str:
    text = repr(w)
    if "e" in text or "E" in text:
        if "." not in text.split("e")[0].split("E")[0] and "." in like:
            text = text.replace("e", ".0e", 1)
    elif "." not in text:
        text += ".0"
    return text


def _mutate_text(
    code: str, rng: random.Random, max_edits: int, check_python: bool
) -> tuple[str, list[str]] | str:
    """Regex literal perturbation inside the blocks: (child, notes), or why nothing changed."""
    contents = block_contents(code)
    blocks = find_blocks(code)
    sites: list[tuple[int, int, re.Match[str]]] = []  # (block, line index in block, match)
    for bi, content in enumerate(contents):
        for li, line in enumerate(content.split("\n")):
            if line.lstrip().startswith(_COMMENT_LEAD):
                continue
            for m in _NUMBER.finditer(line):
                sites.append((bi, li, m))
    if not sites:
        return "no numeric literals inside the EVOLVE blocks; nothing to mutate"
    for _ in range(_TRIES_PER_EDIT):
        k = min(rng.randint(1, max_edits), len(sites))
        picked = sorted(rng.sample(range(len(sites)), k))
        lines_per_block = [c.split("\n") for c in contents]
        notes: list[str] = []
        # Replace right to left within a line so earlier spans stay valid.
        for idx in reversed(picked):
            bi, li, m = sites[idx]
            text = m.group(1)
            if any(ch in text for ch in ".eE"):
                v = float(text)
                w = abs(perturb_float(v, rng))
                if w == v:
                    w = v * 1.1 if v else 0.1
                new_text = _format_float(float(f"{w:.6g}"), text)
            else:
                new_text = str(perturb_int(int(text), rng))
            line = lines_per_block[bi][li]
            lines_per_block[bi][li] = line[: m.start(1)] + new_text + line[m.end(1) :]
            first = blocks[bi].start + 2 if blocks else 1
            notes.append(f"literal {text} -> {new_text} at line {first + li}")
        child = replace_block_contents(code, ["\n".join(ls) for ls in lines_per_block])
        if child == code or (check_python and python_syntax_error(child) is not None):
            continue
        notes.reverse()
        return child, notes
    return "could not change a numeric literal without breaking the program"
