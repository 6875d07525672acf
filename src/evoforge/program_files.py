"""Programs of several files: one canonical text for a file tree, and its checked reading and writing.

A problem whose initial program is a directory (``initial_program/``) evolves a tree of files.
Everything else in evoforge (storage, caches, selectors, lineage) keeps handling a program as one
string, :attr:`evoforge.program.Program.code`; this module is the one place that turns a tree
into that string (:func:`pack`) and back (:func:`unpack`), and that writes a tree to disk
(:func:`write_tree`) or reads one (:func:`read_tree`).

The packed form (``v1``)::

    evoforge-files v1 @@evoforge-file@@
    @@evoforge-file@@ driver.py
    <driver.py's text>
    @@evoforge-file@@ kernel/sum.c
    <kernel/sum.c's text>

The first line names the *boundary*: a token that occurs in no file's text and no path, so a line
starting with it and a space can only be a header. Each file's text follows its header and is
followed by exactly one ``"\\n"`` the packer adds (so a text without a final newline survives).
Files are sorted by path and the boundary is the first of ``@@evoforge-file@@``,
``@@evoforge-file-1@@``, ... that is absent: the same tree always packs to the same string.
Header lines are outside every EVOLVE block, so line-based edits of the blocks (literal tuning,
SEARCH/REPLACE) never touch them.

Paths are relative, ``/``-separated, with no empty, ``.`` or ``..`` part, no backslash, no control
or format character, no EVOLVE-BLOCK marker text, no leading ``-`` in a part, at most 255 bytes a
part and 1024 in all; a path is never both a file and a directory of another. A tree holds at most
:data:`MAX_FILES` files and :data:`MAX_BYTES` bytes. Anything else raises
:class:`~evoforge.errors.ProgramFilesError` naming the path and the rule.

Stdlib only (and evoforge.errors): the evaluation worker imports it to write a candidate's tree.
"""

from __future__ import annotations

import os
import stat
import unicodedata

from evoforge.errors import ProgramFilesError

TYPE_CHECKING = False  # neither typing nor pathlib at run time: the worker imports this module
if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "LANGUAGES",
    "MAGIC",
    "MAX_BYTES",
    "MAX_FILES",
    "MULTI_FILE",
    "check_path",
    "is_packed",
    "language_of",
    "pack",
    "read_tree",
    "tree_diff",
    "unpack",
    "write_tree",
]

#: ``Problem.language`` (and ``MutationRequest.language``) of a program of several files
MULTI_FILE = "multi-file"
MAGIC = "evoforge-files v1 "
_BASE = "@@evoforge-file@@"
MAX_FILES = 256
MAX_BYTES = 8 * 1024 * 1024
_MAX_PART = 255
_MAX_PATH = 1024
_MARKERS = ("EVOLVE-BLOCK-START", "EVOLVE-BLOCK-END")
_SKIPPED_DIRS = frozenset({"__pycache__"})

#: a file's language by its suffix (programs of one file and of several)
LANGUAGES = {
    ".py": "python", ".c": "c", ".h": "c", ".cc": "cpp", ".cpp": "cpp", ".hpp": "cpp",
    ".rs": "rust", ".v": "verilog", ".sv": "verilog", ".js": "javascript", ".ts": "typescript",
    ".go": "go", ".java": "java", ".jl": "julia", ".lua": "lua", ".sh": "bash",
}


def language_of(path: str) -> str:
    """The language of a file, from its suffix (``"text"`` when unknown)."""
    suffix = os.path.splitext(path)[1].lower()
    return LANGUAGES.get(suffix, suffix.lstrip(".") or "text")


def _bad_char(ch: str) -> bool:
    return unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp")


def check_path(path: object) -> str:
    """``path`` if it is an allowed relative file path (see the module docstring), else
    ProgramFilesError naming it and the rule it breaks."""
    if not isinstance(path, str):
        raise ProgramFilesError(f"a file path must be text, got {type(path).__name__}")
    shown = repr(path)[:200]
    if not path:
        raise ProgramFilesError("a file path is empty")
    if path.startswith("/"):
        raise ProgramFilesError(f"file path {shown} is absolute; only paths relative to the "
                                "program's directory are allowed")
    if "\\" in path:
        raise ProgramFilesError(f"file path {shown} contains a backslash; separate directories "
                                "with '/'")
    if any(_bad_char(ch) for ch in path):
        raise ProgramFilesError(f"file path {shown} contains a control or format character")
    if any(m in path for m in _MARKERS):
        raise ProgramFilesError(f"file path {shown} contains an EVOLVE-BLOCK marker")
    if len(path.encode("utf-8", "surrogatepass")) > _MAX_PATH:
        raise ProgramFilesError(f"file path {shown} is longer than {_MAX_PATH} bytes")
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise ProgramFilesError(
                f"file path {shown} has an empty, '.' or '..' part; a path must stay inside the "
                "program's directory")
        if part.startswith("-"):
            raise ProgramFilesError(f"file path {shown} has a part starting with '-'")
        if len(part.encode("utf-8", "surrogatepass")) > _MAX_PART:
            raise ProgramFilesError(f"file path {shown} has a part longer than {_MAX_PART} bytes")
    return path


def _check_tree(files: dict[str, str]) -> list[str]:
    """The sorted paths of ``files`` after checking every rule; ProgramFilesError otherwise."""
    if not files:
        raise ProgramFilesError("a program of several files needs at least one file")
    if len(files) > MAX_FILES:
        raise ProgramFilesError(f"the program has {len(files)} files, more than {MAX_FILES}")
    total = 0
    for path, text in files.items():
        check_path(path)
        if not isinstance(text, str):
            raise ProgramFilesError(f"{path}: the content must be text, got {type(text).__name__}")
        total += len(text.encode("utf-8", "surrogatepass"))
    if total > MAX_BYTES:
        raise ProgramFilesError(f"the program's files hold {total} bytes, more than {MAX_BYTES}")
    paths = sorted(files)
    dirs = {p[: i] for p in paths for i in range(len(p)) if p[i] == "/"}
    clash = sorted(dirs & set(paths))
    if clash:
        raise ProgramFilesError(f"{clash[0]!r} is both a file and a directory of another file")
    return paths


def _boundary(files: dict[str, str]) -> str:
    k = 0
    while True:
        b = _BASE if k == 0 else f"@@evoforge-file-{k}@@"
        if not any(b in text or b in path for path, text in files.items()):
            return b
        k += 1


def pack(files: dict[str, str]) -> str:
    """The canonical text of the tree ``files`` (relative path -> text); see the module
    docstring. Raises ProgramFilesError for a path or tree that breaks a rule."""
    paths = _check_tree(files)
    b = _boundary(files)
    parts = [f"{MAGIC}{b}\n"]
    for p in paths:
        parts.append(f"{b} {p}\n{files[p]}\n")
    return "".join(parts)


def is_packed(code: str) -> bool:
    """Whether ``code`` starts like a packed tree (its validity is :func:`unpack`'s to check)."""
    return code.startswith(MAGIC)


def unpack(code: str) -> dict[str, str]:
    """The tree (path -> text, sorted by path) packed in ``code``; ProgramFilesError when
    ``code`` is not a well-formed packed tree or a path breaks a rule."""
    if not isinstance(code, str) or not code.startswith(MAGIC):
        raise ProgramFilesError(f"not a program of several files: it does not start with "
                                f"{MAGIC.strip()!r}")
    first, sep, rest = code.partition("\n")
    b = first[len(MAGIC):]
    if not sep or not b or any(ch.isspace() for ch in b):
        raise ProgramFilesError("malformed program of several files: no boundary on its first "
                                "line")
    head = b + " "
    files: dict[str, str] = {}
    path: str | None = None
    lines: list[str] = []

    def close() -> None:
        if path is None:
            return
        text = "".join(lines)
        if not text.endswith("\n"):
            raise ProgramFilesError(f"malformed program of several files: {path!r} does not "
                                    "end with its separating newline")
        if path in files:
            raise ProgramFilesError(f"file {path!r} appears twice")
        files[path] = text[:-1]

    chunks = rest.split("\n")
    for line in [c + "\n" for c in chunks[:-1]] + ([chunks[-1]] if chunks[-1] else []):
        if line.startswith(head) and line.endswith("\n"):
            close()
            path, lines = check_path(line[len(head):-1]), []
        elif path is None:
            raise ProgramFilesError("malformed program of several files: text before the "
                                    "first file header")
        else:
            lines.append(line)
    close()
    if any(b in t for t in files.values()):
        raise ProgramFilesError("malformed program of several files: a file contains the "
                                "boundary")
    _check_tree(files)
    return {p: files[p] for p in sorted(files)}


def read_tree(root: str | Path) -> dict[str, str]:
    """The files under the directory ``root`` (``__pycache__`` directories skipped), checked:
    no symlinks or special files, UTF-8 text, the path rules and the size caps."""
    root = os.fspath(root)
    files: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIPPED_DIRS)
        for name in [*dirnames, *filenames]:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            mode = os.lstat(full).st_mode
            if stat.S_ISLNK(mode):
                raise ProgramFilesError(f"{full}: is a symbolic link; a program's files must be "
                                        "regular files inside its directory")
            if name in filenames and not stat.S_ISREG(mode):
                raise ProgramFilesError(f"{full}: not a regular file")
            if name in dirnames:
                continue
            check_path(rel)
            try:
                with open(full, encoding="utf-8", newline="") as f:
                    files[rel] = f.read()
            except UnicodeDecodeError as e:
                raise ProgramFilesError(f"{full}: not UTF-8 text; a program's files are "
                                        "text") from e
            if len(files) > MAX_FILES:
                raise ProgramFilesError(f"{root}: more than {MAX_FILES} files")
    if not files:
        raise ProgramFilesError(f"{root}: the directory holds no files")
    _check_tree(files)
    return {p: files[p] for p in sorted(files)}


def write_tree(root: str | Path, files: dict[str, str]) -> list[str]:
    """Write ``files`` under the directory ``root`` (created if missing) and return the paths
    written. Paths are checked first (nothing is written if one breaks a rule); no symbolic
    link is followed below ``root``. Text is written as is (no newline translation)."""
    paths = _check_tree(files)
    root = os.fspath(root)
    os.makedirs(root, exist_ok=True)
    written = []
    for rel in paths:
        parts = rel.split("/")
        cur = root
        for part in parts[:-1]:
            cur = os.path.join(cur, part)
            try:
                os.mkdir(cur)
            except FileExistsError:
                if not stat.S_ISDIR(os.lstat(cur).st_mode):
                    raise ProgramFilesError(f"{cur}: exists and is not a directory (a symbolic "
                                            "link is not followed)") from None
        target = os.path.join(cur, parts[-1])
        # no O_TRUNC before the checks; O_NONBLOCK: a FIFO planted there fails, never blocks
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        try:
            fd = os.open(target, flags, 0o644)
        except OSError as e:
            raise ProgramFilesError(f"{target}: cannot write it ({e.strerror or e})") from e
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ProgramFilesError(f"{target}: exists and is not a regular file; it is "
                                        "not written")
            if st.st_nlink > 1:  # a hard link to a file elsewhere: writing would change it
                raise ProgramFilesError(f"{target}: exists with other hard links; it is not "
                                        "written through them: remove it first")
            os.ftruncate(fd, 0)
            f.write(files[rel])
        written.append(target)
    return written


def tree_diff(old: dict[str, str], new: dict[str, str], old_label: str, new_label: str) -> str:
    """A unified diff per changed file (``--- old_label/path``, ``+++ new_label/path``)."""
    import difflib

    out: list[str] = []
    for path in sorted(set(old) | set(new)):
        a, b = old.get(path), new.get(path)
        if a == b:
            continue
        out.extend(difflib.unified_diff(
            (a or "").splitlines(True), (b or "").splitlines(True),
            f"{old_label}/{path}" if a is not None else "/dev/null",
            f"{new_label}/{path}" if b is not None else "/dev/null"))
        if out and not out[-1].endswith("\n"):
            out[-1] += "\n"
    return "".join(out)
