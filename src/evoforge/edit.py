"""Edits: EVOLVE blocks, SEARCH/REPLACE diffs and full rewrites, applied with marker protection.

A program marks the regions the search may change with lines containing ``EVOLVE-BLOCK-START`` and
``EVOLVE-BLOCK-END`` (inside the language's comment syntax: ``# ...``, ``// ...``, ``-- ...``).
Everything outside the blocks, and the marker lines themselves, are the program's *fixed parts*:
no edit in this module can change them, whatever an LLM reply says. A program without markers is
one implicit block (the whole file is evolvable).

Lines are split on ``"\\n"`` only and keep their line endings, so fixed parts stay byte-identical
(``"\\r\\n"`` files included).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Collection
from dataclasses import dataclass

from evoforge.errors import EditError, ProgramFilesError
from evoforge.program_files import MULTI_FILE, check_path, language_of, pack, unpack

MARKER_START = "EVOLVE-BLOCK-START"
MARKER_END = "EVOLVE-BLOCK-END"

__all__ = [
    "MARKER_END",
    "MARKER_START",
    "Block",
    "apply_diff",
    "apply_files_diff",
    "apply_files_rewrite",
    "apply_rewrite",
    "block_contents",
    "check_fixed_parts",
    "extract_code",
    "find_blocks",
    "parse_diff",
    "parse_files_diff",
    "python_syntax_error",
    "replace_block_contents",
]


@dataclass(frozen=True)
class Block:
    """One EVOLVE block: 0-based line indexes of its START and END marker lines."""

    start: int
    end: int


# --------------------------------------------------------------------------- lines and blocks


def _lines(text: str) -> list[str]:
    """Split on ``\\n`` only, keeping the endings; ``"".join(_lines(t)) == t``."""
    parts = text.split("\n")
    out = [p + "\n" for p in parts[:-1]]
    if parts[-1]:
        out.append(parts[-1])
    return out


def _has_marker(text: str) -> bool:
    return MARKER_START in text or MARKER_END in text


def find_blocks(code: str) -> list[Block]:
    """The EVOLVE blocks of ``code`` in order; ``[]`` when it has no markers.

    Raises EditError naming the (1-based) line of an unbalanced or nested marker.
    """
    blocks: list[Block] = []
    open_at: int | None = None
    for i, line in enumerate(_lines(code)):
        has_start, has_end = MARKER_START in line, MARKER_END in line
        if has_start and has_end:
            raise EditError(
                f"line {i + 1} holds both {MARKER_START} and {MARKER_END}; "
                "put each marker on its own line"
            )
        if has_start:
            if open_at is not None:
                raise EditError(
                    f"line {i + 1}: nested {MARKER_START} (the block opened at line "
                    f"{open_at + 1} is not closed); close it with {MARKER_END} first"
                )
            open_at = i
        elif has_end:
            if open_at is None:
                raise EditError(
                    f"line {i + 1}: {MARKER_END} without a matching {MARKER_START}; "
                    "add the START marker above it or remove this line"
                )
            blocks.append(Block(open_at, i))
            open_at = None
    if open_at is not None:
        raise EditError(
            f"line {open_at + 1}: {MARKER_START} is never closed; add a {MARKER_END} line "
            "after the block"
        )
    return blocks


def block_contents(code: str) -> list[str]:
    """Text strictly between each START/END pair; a program without markers is ``[code]``."""
    blocks = find_blocks(code)
    if not blocks:
        return [code]
    lines = _lines(code)
    return ["".join(lines[b.start + 1 : b.end]) for b in blocks]


def _fixed_segments(code: str) -> list[str]:
    """The fixed parts: text before/between/after the blocks, marker lines included."""
    blocks = find_blocks(code)
    lines = _lines(code)
    if not blocks:
        return []
    segs: list[str] = []
    prev = 0
    for b in blocks:
        segs.append("".join(lines[prev : b.start + 1]))
        prev = b.end
    segs.append("".join(lines[prev:]))
    return segs


def replace_block_contents(code: str, contents: list[str]) -> str:
    """Splice ``contents`` (one per block) into ``code``; fixed parts stay byte-identical.

    A non-empty content that does not end with a newline gets one, so the END marker keeps its
    own line. Without markers the whole file is the one block, so ``contents[0]`` is the result.
    """
    blocks = find_blocks(code)
    n = max(len(blocks), 1)
    if len(contents) != n:
        raise EditError(
            f"got {len(contents)} block contents for a program with {n} EVOLVE block(s); "
            "give exactly one content per block"
        )
    for i, c in enumerate(contents):
        if _has_marker(c):
            raise EditError(
                f"new content of EVOLVE block {i + 1} contains a marker string "
                f"({MARKER_START}/{MARKER_END}); markers cannot be added, moved or removed"
            )
    if not blocks:
        return contents[0]
    lines = _lines(code)
    out: list[str] = []
    prev = 0
    for b, c in zip(blocks, contents, strict=True):
        out.extend(lines[prev : b.start + 1])
        if c and not c.endswith("\n"):
            c += "\n"
        out.append(c)
        prev = b.end
    out.extend(lines[prev:])
    return "".join(out)


def check_fixed_parts(parent: str, child: str) -> None:
    """Raise EditError if the child's marker lines or any text outside its blocks differ."""
    pb, cb = find_blocks(parent), find_blocks(child)
    if len(pb) != len(cb):
        raise EditError(
            f"the child has {len(cb)} EVOLVE block(s) but the parent has {len(pb)}; "
            "markers must stay exactly as they are"
        )
    if not pb:
        return
    ps, cs = _fixed_segments(parent), _fixed_segments(child)
    for i, (a, b) in enumerate(zip(ps, cs, strict=True)):
        if a != b:
            where = (
                "before the first block" if i == 0
                else "after the last block" if i == len(ps) - 1
                else f"between blocks {i} and {i + 1}"
            )
            raise EditError(
                f"the child changed fixed text {where} (outside the EVOLVE blocks or a marker "
                "line); only text between the markers may change"
            )


# --------------------------------------------------------------------------- diffs

_SEARCH_RE = re.compile(r"^\s*<{5,9}\s*SEARCH\b.*$")
_DIVIDER_RE = re.compile(r"^\s*={5,9}\s*$")
_REPLACE_RE = re.compile(r"^\s*>{5,9}\s*REPLACE\b.*$")


def parse_diff(text: str) -> list[tuple[str, str]]:
    """The ``(search, replace)`` pairs of an OpenEvolve-style SEARCH/REPLACE reply, in order.

    Format (5-9 angle/equals characters tolerated; prose and code fences around it ignored)::

        <<<<<<< SEARCH
        old lines
        =======
        new lines
        >>>>>>> REPLACE

    Texts carry no trailing newline. Incomplete blocks (no divider or no REPLACE line) are dropped.
    """
    pairs: list[tuple[str, str]] = []
    state = "out"
    search: list[str] = []
    replace: list[str] = []
    for raw in text.replace("\r\n", "\n").split("\n"):
        if state == "out":
            if _SEARCH_RE.match(raw):
                state, search, replace = "search", [], []
        elif state == "search":
            if _DIVIDER_RE.match(raw):
                state = "replace"
            elif _SEARCH_RE.match(raw):  # restarted: drop the unfinished one
                search = []
            else:
                search.append(raw)
        else:  # replace
            if _REPLACE_RE.match(raw):
                pairs.append(("\n".join(search), "\n".join(replace)))
                state = "out"
            else:
                replace.append(raw)
    return pairs


def _indent_of(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" \t"))]


def _fuzzy_find(content: str, search: str) -> tuple[int, int, str, int] | None:
    """Find ``search`` in ``content`` line by line, ignoring trailing whitespace and a uniform
    indentation offset. Returns (first line, line count, added prefix, removed chars) or None."""
    clines = [ln.rstrip("\n") for ln in _lines(content)]
    slines = search.split("\n")
    while slines and not slines[0].strip():
        slines.pop(0)
    while slines and not slines[-1].strip():
        slines.pop()
    if not slines:
        return None
    n = len(slines)
    for i in range(len(clines) - n + 1):
        c0, s0 = clines[i], slines[0]
        if c0.strip() != s0.strip():
            continue
        ci, si = _indent_of(c0), _indent_of(s0)
        if len(ci) >= len(si):
            prefix, cut = ci[: len(ci) - len(si)], 0
        else:
            prefix, cut = "", len(si) - len(ci)
        ok = True
        for c, s in zip(clines[i : i + n], slines, strict=True):
            c, s = c.rstrip(), s.rstrip()
            if not s:
                if c:
                    ok = False
                    break
                continue
            adjusted = prefix + s if not cut else (s[cut:] if not s[:cut].strip() else None)
            if adjusted is None or c != adjusted:
                ok = False
                break
        if ok:
            return i, n, prefix, cut
    return None


def _reindent(text: str, prefix: str, cut: int) -> list[str]:
    out = []
    for line in text.split("\n"):
        if not line.strip():
            out.append(line.rstrip())
        elif cut:
            lead = len(line) - len(line.lstrip(" \t"))
            out.append(line[min(cut, lead) :])
        else:
            out.append(prefix + line)
    return out


def _apply_one(content: str, search: str, replace: str) -> str | None:
    """Apply one SEARCH/REPLACE to one block content; None when the SEARCH is not there.

    SEARCH matches whole lines only (OpenEvolve's semantics): ``x = 1`` never matches inside
    ``x = 10``. An exact whole-line occurrence is used first, then a line-by-line match that
    ignores trailing whitespace and a uniform indentation offset."""
    pos = content.find(search)
    while pos != -1:
        end = pos + len(search)
        if (pos == 0 or content[pos - 1] == "\n") and (
            end == len(content) or content[end] == "\n" or content.startswith("\r\n", end)
        ):
            if not replace:  # deleting whole lines: do not leave an empty line behind
                end += 2 if content.startswith("\r\n", end) else (content[end:end + 1] == "\n")
            return content[:pos] + replace + content[end:]
        pos = content.find(search, pos + 1)
    found = _fuzzy_find(content, search)
    if found is None:
        return None
    i, n, prefix, cut = found
    lines = _lines(content)
    had_nl = lines[i + n - 1].endswith("\n")
    new_lines = _reindent(replace, prefix, cut) if replace else []
    new_text = "\n".join(new_lines)
    if new_lines and had_nl:
        new_text += "\n"
    return "".join(lines[:i]) + new_text + "".join(lines[i + n :])


def _short(text: str, limit: int = 60) -> str:
    first = next((ln.strip() for ln in text.split("\n") if ln.strip()), "")
    return first if len(first) <= limit else first[: limit - 3] + "..."


def apply_diff(code: str, reply: str, language: str = "python") -> str:
    """Apply every SEARCH/REPLACE of ``reply`` to ``code``, in order, inside the EVOLVE blocks.

    Each SEARCH is matched exactly within one block's content first, then line by line ignoring
    trailing whitespace and a uniform indentation offset (the replacement is re-indented by the
    same offset). Raises EditError with the reason when the reply has no SEARCH/REPLACE blocks,
    a SEARCH is empty or not in any block, or a SEARCH/REPLACE touches a marker line.
    ``language`` :data:`~evoforge.program_files.MULTI_FILE`: ``code`` is a packed tree and each
    SEARCH names its file (:func:`apply_files_diff`).
    """
    if language == MULTI_FILE:
        return apply_files_diff(code, reply)
    pairs = parse_diff(reply)
    if not pairs:
        raise EditError(
            "no SEARCH/REPLACE blocks found in the reply; expected '<<<<<<< SEARCH', the old "
            "lines, '=======', the new lines, '>>>>>>> REPLACE'"
        )
    return _apply_pairs(code, list(enumerate(pairs, start=1)))


def _apply_pairs(code: str, pairs: list[tuple[int, tuple[str, str]]]) -> str:
    """Apply numbered ``(search, replace)`` pairs to ``code`` (see :func:`apply_diff`)."""
    contents = block_contents(code)
    for k, (search, replace) in pairs:
        label = f"SEARCH/REPLACE #{k}"
        if not search.strip():
            raise EditError(f"{label}: the SEARCH text is empty; quote the exact lines to change")
        if _has_marker(search) or _has_marker(replace):
            part = "SEARCH" if _has_marker(search) else "REPLACE"
            raise EditError(
                f"{label}: the {part} text contains an EVOLVE-BLOCK marker line; markers "
                "cannot be edited, change only the code between them"
            )
        for j, content in enumerate(contents):
            new = _apply_one(content, search, replace)
            if new is not None:
                contents[j] = new
                break
        else:
            current = replace_block_contents(code, contents)
            outside = search in current or _fuzzy_find(current, search) is not None
            msg = f"{label}: SEARCH text not found in any EVOLVE block ('{_short(search)}')"
            if outside and find_blocks(code):
                msg += (
                    "; it was found outside the EVOLVE blocks, where code is fixed and cannot "
                    "be changed"
                )
            else:
                msg += "; it must match the current code exactly (whitespace aside)"
            raise EditError(msg)
    child = replace_block_contents(code, contents)
    check_fixed_parts(code, child)
    return child


# --------------------------------------------------------------------------- rewrites

# possessive (no backtracking): the overlapping classes were quadratic in a hostile line
_FENCE_OPEN = re.compile(r"^\s*(`{3,}|~{3,})\s*+([\w+#.-]*+)[^`]*+$")

_ALIASES = {"python": {"python", "py", "python3", "py3"}}


def _closes(line: str, fence: str) -> bool:
    t = line.strip()
    return len(t) >= len(fence) and set(t) == {fence[0]}


def extract_code(reply: str, language: str = "python") -> str | None:
    """The largest fenced code block tagged ``language`` (or an alias such as ``py``) or untagged.

    A fence left open at the end of the reply (a truncated answer) counts up to the end.
    None when there is no such block.
    """
    lang = language.lower()
    accepted = {"", lang} | _ALIASES.get(lang, set())
    best: str | None = None
    lines = reply.replace("\r\n", "\n").split("\n")
    i = 0
    while i < len(lines):
        m = _FENCE_OPEN.match(lines[i])
        if not m:
            i += 1
            continue
        fence, tag = m.group(1), m.group(2).lower()
        j = i + 1
        while j < len(lines) and not _closes(lines[j], fence):
            j += 1
        body = "\n".join(lines[i + 1 : j])
        if body and not body.endswith("\n"):
            body += "\n"
        if tag in accepted and (best is None or len(body) > len(best)):
            best = body
        i = j + 1
    return best


def apply_rewrite(code: str, reply: str, language: str = "python") -> str:
    """Apply a full-rewrite reply: only the EVOLVE blocks of the parent change.

    The new program is the reply's largest code block (or the whole reply if it has no fence).
    With markers, its block count must match the parent's and its block contents are spliced into
    the parent's fixed parts. Without markers, it becomes the content of the parent's only block
    (or the whole program when the parent has no markers). Anything else raises EditError.
    """
    if language == MULTI_FILE:
        return apply_files_rewrite(code, reply)
    new = extract_code(reply, language)
    if new is None:
        new = reply
    return _rewrite_with(code, new)


def _rewrite_with(code: str, new: str) -> str:
    """``code`` rewritten as ``new`` (see :func:`apply_rewrite`), fixed parts kept."""
    if not new.strip():
        raise EditError("the rewrite is empty; reply with the complete program in a code block")
    parent_blocks = find_blocks(code)
    try:
        new_blocks = find_blocks(new)
    except EditError as e:
        raise EditError(f"the rewritten program has broken EVOLVE markers: {e}") from e
    if new_blocks:
        if not parent_blocks:
            raise EditError(
                "the rewrite adds EVOLVE-BLOCK markers but the parent has none; "
                "reply with the program without markers"
            )
        if len(new_blocks) != len(parent_blocks):
            raise EditError(
                f"the rewrite has {len(new_blocks)} EVOLVE block(s) but the program has "
                f"{len(parent_blocks)}; keep every marker line exactly as it is"
            )
        child = replace_block_contents(code, block_contents(new))
    elif not parent_blocks:
        child = new
    elif len(parent_blocks) == 1:
        child = replace_block_contents(code, [new])
    else:
        raise EditError(
            f"the rewrite has no EVOLVE-BLOCK markers but the program has {len(parent_blocks)} "
            "blocks; reply with the complete program, marker lines included"
        )
    check_fixed_parts(code, child)
    return child


# --------------------------------------------------------------------------- several files
#
# A program of several files (evoforge.program_files) is edited file by file. A SEARCH/REPLACE
# names its file on its SEARCH line (``<<<<<<< SEARCH kernel.c``) or on the line just before it
# (``File: kernel.c``); a rewrite gives each changed file in full in a fenced block right after a
# ``File: path`` line. Only files with EVOLVE blocks may change, and only inside their blocks.
# Every file's problem is collected, so the reason the LLM sees next time names each one.

# matched against the line without its trailing quotes, colons and blanks (stripped first: a
# lazy name followed by them took time quadratic in a hostile line's length)
_NAME_LINE = re.compile(r"^[\s#*>\-]*(?:(file|path)\s*:\s*)?[`'\"*]*([^\s`'\"*]+)$",
                        re.IGNORECASE)
_MAX_NAME_LINE = 1200  # a path is at most 1024 bytes; a longer line names no file


def _named_file(line: str, known: Collection[str], explicit_only: bool = False
                ) -> str | None:
    """The path a line names (``File: x``, ``x``, ```x```, ``### x``): any path after
    ``File:``, else only a path of ``known``; None when the line names none."""
    if len(line) > _MAX_NAME_LINE:
        return None
    m = _NAME_LINE.match(line.rstrip().rstrip("`'\"*:"))
    if not m:
        return None
    name = m.group(2)
    if m.group(1):
        return name
    if explicit_only:
        return None
    return name if name in known else None


def parse_files_diff(text: str, known: Collection[str] = ()
                     ) -> list[tuple[str | None, str, str]]:
    """The ``(path, search, replace)`` triples of a SEARCH/REPLACE reply for a program of
    several files, in order. ``path`` is what the SEARCH line names after ``SEARCH``, else
    the file (of ``known``, or any after ``File:``) named on the last non-blank line before
    it, else None. Texts as in :func:`parse_diff`."""
    out: list[tuple[str | None, str, str]] = []
    state, last_line = "out", ""
    path: str | None = None
    search: list[str] = []
    replace: list[str] = []
    for raw in text.replace("\r\n", "\n").split("\n"):
        if state == "out":
            if _SEARCH_RE.match(raw):
                state, search, replace = "search", [], []
                rest = raw.split("SEARCH", 1)[1].strip()
                path = (_named_file(rest, known) or rest.strip("`'\"*: ") or None) if rest else (
                    _named_file(last_line, known))
            elif raw.strip() and not raw.strip().startswith(("```", "~~~")):
                last_line = raw
        elif state == "search":
            if _DIVIDER_RE.match(raw):
                state = "replace"
            elif _SEARCH_RE.match(raw):
                search = []
            else:
                search.append(raw)
        else:
            if _REPLACE_RE.match(raw):
                out.append((path, "\n".join(search), "\n".join(replace)))
                state, last_line = "out", ""
            else:
                replace.append(raw)
    return out


def _evolvable(files: dict[str, str]) -> list[str]:
    return [p for p, text in files.items() if find_blocks(text)]


def _resolve(name: str | None, what: str, files: dict[str, str], evolvable: list[str]
             ) -> tuple[str | None, str | None]:
    """(the file ``name`` means, None) or (None, why it cannot be changed)."""
    if name is None:
        if len(evolvable) == 1:
            return evolvable[0], None
        return None, (f"{what} does not name its file; write the path after SEARCH, e.g. "
                      f"'<<<<<<< SEARCH {evolvable[0]}'")
    if name not in files and name.startswith("./") and name[2:] in files:
        name = name[2:]
    if name not in files:
        try:
            check_path(name)
        except ProgramFilesError as e:
            return None, f"{what}: {e}"
        return None, (f"{what} names {name!r}, which is not a file of the program (its files: "
                      f"{', '.join(files)}); files cannot be added")
    if name not in evolvable:
        return None, (f"{name}: the file has no EVOLVE blocks; it is context and cannot be "
                      f"changed ({what})")
    return name, None


def _finish(files: dict[str, str], new: dict[str, str], errors: list[str]) -> str:
    for path in new:
        if new[path] != files[path] and language_of(path) == "python":
            err = python_syntax_error(new[path])
            if err:
                errors.append(f"{path}: syntax error in the changed file ({err})")
    if errors:
        raise EditError("; ".join(errors))
    return pack({**files, **new})


def apply_files_diff(code: str, reply: str) -> str:
    """Apply a SEARCH/REPLACE reply to a packed program of several files: each SEARCH/REPLACE
    to the file it names (:func:`parse_files_diff`; unnamed ones to the only file with blocks),
    inside that file's EVOLVE blocks. Changed Python files must still parse. Raises EditError
    naming every file (and SEARCH/REPLACE) that cannot be changed and why: an unknown or
    illegal path, a file without blocks, a SEARCH not found or touching fixed text."""
    files = unpack(code)
    triples = parse_files_diff(reply, files)
    if not triples:
        raise EditError(
            "no SEARCH/REPLACE blocks found in the reply; expected '<<<<<<< SEARCH path/of/file', "
            "the old lines, '=======', the new lines, '>>>>>>> REPLACE'")
    evolvable = _evolvable(files)
    errors: list[str] = []
    per_file: dict[str, list[tuple[int, tuple[str, str]]]] = {}
    for k, (name, search, replace) in enumerate(triples, start=1):
        path, why = _resolve(name, f"SEARCH/REPLACE #{k}", files, evolvable)
        if path is None:
            errors.append(why or "")
        else:
            per_file.setdefault(path, []).append((k, (search, replace)))
    new: dict[str, str] = {}
    for path, pairs in per_file.items():
        try:
            new[path] = _apply_pairs(files[path], pairs)
        except EditError as e:
            errors.append(f"{path}: {e}")
    return _finish(files, new, errors)


def _named_fences(reply: str, files: dict[str, str]) -> list[tuple[str | None, str]]:
    """``(path or None, body)`` of each fenced block: the path named on the last non-blank
    line before the fence, or in the fence's info string (```` ```c kernel.c ````)."""
    out: list[tuple[str | None, str]] = []
    lines = reply.replace("\r\n", "\n").split("\n")
    last = ""
    i = 0
    while i < len(lines):
        m = _FENCE_OPEN.match(lines[i])
        if not m:
            if lines[i].strip():
                last = lines[i]
            i += 1
            continue
        fence = m.group(1)
        info = lines[i].strip()[len(fence):].split()
        name = next((w for w in info if w in files), None) or _named_file(last, files)
        j = i + 1
        while j < len(lines) and not _closes(lines[j], fence):
            j += 1
        body = "\n".join(lines[i + 1 : j])
        if body and not body.endswith("\n"):
            body += "\n"
        out.append((name, body))
        last = ""
        i = j + 1
    return out


def apply_files_rewrite(code: str, reply: str) -> str:
    """Apply a full-rewrite reply to a packed program of several files: each fenced block
    named by a ``File: path`` line before it replaces that file (only its EVOLVE blocks take
    the new text, as in :func:`apply_rewrite`); files not given stay as they are. Unnamed
    blocks count only when no block is named and the program has one file with blocks.
    Raises EditError naming every file that cannot be changed and why."""
    files = unpack(code)
    evolvable = _evolvable(files)
    fences = _named_fences(reply, files)
    named = [(n, b) for n, b in fences if n is not None]
    if not named:
        if len(evolvable) == 1 and fences:
            named = [(evolvable[0], max((b for _, b in fences), key=len))]
        else:
            raise EditError(
                "no file named in the rewrite; give each changed file in full in a fenced code "
                f"block right after a line 'File: path' (e.g. 'File: {evolvable[0]}')")
    errors: list[str] = []
    new: dict[str, str] = {}
    for k, (name, body) in enumerate(named, start=1):
        path, why = _resolve(name, f"rewritten file #{k}", files, evolvable)
        if path is None:
            errors.append(why or "")
        elif path in new:
            errors.append(f"{path}: given twice in the rewrite; give each file once")
        else:
            try:
                new[path] = _rewrite_with(files[path], body)
            except EditError as e:
                errors.append(f"{path}: {e}")
    return _finish(files, new, errors)


# --------------------------------------------------------------------------- syntax


def python_syntax_error(code: str) -> str | None:
    """``"line N: message"`` when ``code`` is not valid Python, else None (nothing is run)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compile(code, "<candidate>", "exec", dont_inherit=True)
    except SyntaxError as e:  # IndentationError and TabError included
        return f"line {e.lineno}: {e.msg}"
    except (ValueError, OverflowError, RecursionError, MemoryError) as e:
        return f"line ?: {type(e).__name__}: {e}"
    return None
