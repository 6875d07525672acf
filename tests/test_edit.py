from __future__ import annotations

import random

import pytest

from evoforge.edit import (
    MARKER_END,
    MARKER_START,
    Block,
    apply_diff,
    apply_rewrite,
    block_contents,
    check_fixed_parts,
    extract_code,
    find_blocks,
    parse_diff,
    python_syntax_error,
    replace_block_contents,
)
from evoforge.errors import EditError, EvoforgeError

PROGRAM = '''"""Fixed header."""
import math

SCALE = 2.0  # fixed


# EVOLVE-BLOCK-START
def f(x):
    y = x * 0.5
    if y > 1:
        y = y - 1
    return y + 0.25
# EVOLVE-BLOCK-END


def run():
    total = 0
    for i in range(3):
        # EVOLVE-BLOCK-START
        total += f(i) * SCALE
        total = total - 0.1
        # EVOLVE-BLOCK-END
    return total
'''


def diff(search: str, replace: str) -> str:
    return f"<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n"


# ----------------------------------------------------------------------------- blocks


def test_find_blocks_and_contents() -> None:
    blocks = find_blocks(PROGRAM)
    assert blocks == [Block(6, 12), Block(18, 21)]
    lines = PROGRAM.split("\n")
    assert MARKER_START in lines[6] and MARKER_END in lines[12]
    contents = block_contents(PROGRAM)
    assert contents[0].startswith("def f(x):\n") and contents[0].endswith("return y + 0.25\n")
    assert contents[1] == "        total += f(i) * SCALE\n        total = total - 0.1\n"


def test_no_markers_is_one_implicit_block() -> None:
    code = "x = 1\ny = 2\n"
    assert find_blocks(code) == []
    assert block_contents(code) == [code]
    assert replace_block_contents(code, ["z = 3\n"]) == "z = 3\n"
    assert apply_diff(code, diff("y = 2", "y = 5")) == "x = 1\ny = 5\n"


@pytest.mark.parametrize(
    ("code", "line", "word"),
    [
        ("a\n# EVOLVE-BLOCK-START\nb\n", 2, "never closed"),
        ("a\nb\n# EVOLVE-BLOCK-END\n", 3, "without a matching"),
        ("# EVOLVE-BLOCK-START\nx\n# EVOLVE-BLOCK-START\ny\n# EVOLVE-BLOCK-END\n", 3, "nested"),
        ("x\n# EVOLVE-BLOCK-START EVOLVE-BLOCK-END\n", 2, "both"),
    ],
)
def test_unbalanced_markers_name_the_line(code: str, line: int, word: str) -> None:
    with pytest.raises(EditError, match=rf"line {line}\b.*{word}|{word}.*line {line}\b"):
        find_blocks(code)


def test_edit_error_is_an_evoforge_error() -> None:
    assert issubclass(EditError, EvoforgeError)


def test_replace_block_contents_keeps_fixed_parts_byte_identical() -> None:
    child = replace_block_contents(PROGRAM, ["def f(x):\n    return 1", ""])
    check_fixed_parts(PROGRAM, child)
    assert block_contents(child) == ["def f(x):\n    return 1\n", ""]
    assert "def f(x):\n    return 1\n# EVOLVE-BLOCK-END" in child
    with pytest.raises(EditError, match="one content per block"):
        replace_block_contents(PROGRAM, ["x = 1\n"])
    with pytest.raises(EditError, match="marker"):
        replace_block_contents(PROGRAM, ["# EVOLVE-BLOCK-END\n", ""])


def test_crlf_and_other_comment_styles() -> None:
    code = "int a = 1;\r\n// EVOLVE-BLOCK-START\r\nint b = 2;\r\n// EVOLVE-BLOCK-END\r\nint c;\r\n"
    assert block_contents(code) == ["int b = 2;\r\n"]
    child = apply_diff(code, diff("int b = 2;", "int b = 3;"))
    assert child == code.replace("int b = 2;", "int b = 3;")
    sql = "select 1;\n-- EVOLVE-BLOCK-START\nselect 2;\n-- EVOLVE-BLOCK-END\n"
    assert block_contents(sql) == ["select 2;\n"]


def test_check_fixed_parts_detects_changes() -> None:
    check_fixed_parts(PROGRAM, PROGRAM)
    with pytest.raises(EditError, match="before the first block"):
        check_fixed_parts(PROGRAM, PROGRAM.replace("SCALE = 2.0", "SCALE = 3.0"))
    with pytest.raises(EditError, match="after the last block"):
        check_fixed_parts(PROGRAM, PROGRAM.replace("return total", "return -total"))
    with pytest.raises(EditError, match="between blocks 1 and 2"):
        check_fixed_parts(PROGRAM, PROGRAM.replace("def run():", "def run2():"))
    with pytest.raises(EditError):  # marker line edited (indentation)
        check_fixed_parts(
            PROGRAM, PROGRAM.replace("# EVOLVE-BLOCK-END\n\n", "#EVOLVE-BLOCK-END\n\n")
        )
    with pytest.raises(EditError, match="1 EVOLVE block"):
        check_fixed_parts(PROGRAM, "\n".join(PROGRAM.split("\n")[:13]) + "\n")


# ----------------------------------------------------------------------------- diffs


def test_parse_diff_tolerates_prose_fences_and_marker_lengths() -> None:
    reply = (
        "Here is my change:\n```python\n<<<<<<<<< SEARCH\n    y = x * 0.5\n=====\n"
        "    y = x * 0.7\n>>>>> REPLACE\n```\nAnd another:\n"
        "<<<<<<< SEARCH\nreturn y\n=======\n>>>>>>> REPLACE\n"
        "<<<<<<< SEARCH\nincomplete\n=======\n"
    )
    assert parse_diff(reply) == [("    y = x * 0.5", "    y = x * 0.7"), ("return y", "")]
    assert parse_diff("no diff here") == []


def test_apply_diff_exact() -> None:
    child = apply_diff(PROGRAM, diff("    y = x * 0.5", "    y = x * 0.75"))
    assert "y = x * 0.75" in child and "y = x * 0.5" not in child
    assert child.count("\n") == PROGRAM.count("\n")
    check_fixed_parts(PROGRAM, child)


def test_apply_diff_whitespace_tolerant_reindents_replacement() -> None:
    # The model quoted the lines dedented and with trailing spaces.
    search = "if y > 1:   \n    y = y - 1"
    replace = "if y > 2:\n    y = y - 2\n    y = y * 1.5"
    child = apply_diff(PROGRAM, diff(search, replace))
    assert "    if y > 2:\n        y = y - 2\n        y = y * 1.5\n    return y + 0.25\n" in child
    check_fixed_parts(PROGRAM, child)
    # Over-indented search in the second block (indented by 8 in the file).
    child2 = apply_diff(PROGRAM, diff(
        "            total += f(i) * SCALE", "            total += f(i) * SCALE * 2"))
    assert "\n        total += f(i) * SCALE * 2\n" in child2
    check_fixed_parts(PROGRAM, child2)


def test_apply_diff_multiple_edits_in_order_across_blocks() -> None:
    reply = (
        diff("    y = x * 0.5", "    y = x * 0.6")
        + "some prose\n"
        + diff("    y = x * 0.6", "    y = x * 0.9")  # sees the first edit's result
        + diff("        total = total - 0.1", "        total = total - 0.2")
    )
    child = apply_diff(PROGRAM, reply)
    assert "y = x * 0.9" in child and "total - 0.2" in child
    check_fixed_parts(PROGRAM, child)


def test_apply_diff_not_found() -> None:
    with pytest.raises(EditError, match="not found in any EVOLVE block") as e:
        apply_diff(PROGRAM, diff("    y = x * 0.123", "    y = 0"))
    assert "outside" not in str(e.value)


def test_apply_diff_found_only_outside_blocks() -> None:
    with pytest.raises(EditError, match="found outside the EVOLVE blocks"):
        apply_diff(PROGRAM, diff("SCALE = 2.0  # fixed", "SCALE = 9.0"))
    with pytest.raises(EditError, match="found outside the EVOLVE blocks"):
        apply_diff(PROGRAM, diff("return total", "return 0"))


def test_apply_diff_rejects_markers_and_empty_search() -> None:
    with pytest.raises(EditError, match="REPLACE text contains an EVOLVE-BLOCK marker"):
        apply_diff(PROGRAM, diff("    y = x * 0.5", "# EVOLVE-BLOCK-END\nSCALE = 9"))
    with pytest.raises(EditError, match="SEARCH text contains an EVOLVE-BLOCK marker"):
        apply_diff(PROGRAM, diff("# EVOLVE-BLOCK-END\n\n\ndef run():", "def run():"))
    with pytest.raises(EditError, match="SEARCH text is empty"):
        apply_diff(PROGRAM, diff("", "x = 1"))
    with pytest.raises(EditError, match="no SEARCH/REPLACE blocks"):
        apply_diff(PROGRAM, "I would change y to 2.")


def test_apply_diff_prefers_whole_line_match() -> None:
    code = "# EVOLVE-BLOCK-START\nxx = 1\nx = 1\n# EVOLVE-BLOCK-END\n"
    assert apply_diff(code, diff("x = 1", "x = 2")) == code.replace("\nx = 1", "\nx = 2")
    assert apply_diff(code, diff("x = 1", "")) == code.replace("\nx = 1", "")  # line deleted


def test_fuzzed_replies_never_damage_fixed_parts() -> None:
    """Random SEARCH/REPLACE replies built from program lines: every successful apply keeps the
    fixed parts; every failure is an EditError."""
    rng = random.Random(1234)
    lines = PROGRAM.split("\n")
    inside = [i for b in find_blocks(PROGRAM) for i in range(b.start + 1, b.end)]
    pool = lines + ["", "    ", "x = 1", "        pass", "# EVOLVE-BLOCK-START", "return 0"]
    applied = failed = 0
    for _ in range(1500):
        parts = []
        for _ in range(rng.choice((1, 1, 2, 3))):
            start = rng.choice(inside) if rng.random() < 0.8 else rng.randrange(len(lines))
            span = lines[start : start + rng.randint(1, 4)]
            if rng.random() < 0.3:  # dedent / re-indent / trailing space variants
                span = [s.strip() if rng.random() < 0.5 else "  " + s + " " for s in span]
            search = "\n".join(span)
            replace = "\n".join(rng.choice(pool) for _ in range(rng.randint(0, 4)))
            parts.append(diff(search, replace))
        reply = "prose\n".join(parts)
        try:
            child = apply_diff(PROGRAM, reply)
        except EditError:
            failed += 1
            continue
        applied += 1
        check_fixed_parts(PROGRAM, child)
        assert len(find_blocks(child)) == 2
        assert [ln for ln in child.split("\n") if "EVOLVE-BLOCK" in ln] == [
            ln for ln in lines if "EVOLVE-BLOCK" in ln
        ]
    assert applied > 100 and failed > 100  # both paths were exercised


# ----------------------------------------------------------------------------- rewrites


def test_extract_code_picks_largest_matching_fence() -> None:
    reply = "a\n```python\nx = 1\n```\nb\n```\nx = 1\ny = 2\n```\n```text\n" + "z\n" * 20 + "```\n"
    assert extract_code(reply) == "x = 1\ny = 2\n"
    assert extract_code("```py\nq = 3\n```") == "q = 3\n"
    assert extract_code("```rust\nfn main() {}\n```", "rust") == "fn main() {}\n"
    assert extract_code("```rust\nfn main() {}\n```") is None
    assert extract_code("no code") is None
    assert extract_code("```python\ntruncated = 1\n") == "truncated = 1\n"


def test_rewrite_with_markers_splices_into_parent_fixed_parts() -> None:
    rewritten = PROGRAM.replace("x * 0.5", "x * 0.9").replace("SCALE = 2.0", "SCALE = 99.0")
    rewritten = rewritten.replace("total = total - 0.1", "total = total - 0.3")
    child = apply_rewrite(PROGRAM, f"Sure!\n```python\n{rewritten}```\nDone.")
    assert "x * 0.9" in child and "total - 0.3" in child
    assert "SCALE = 2.0" in child and "99.0" not in child  # fixed parts come from the parent
    check_fixed_parts(PROGRAM, child)


def test_rewrite_without_markers() -> None:
    one = "import math\n# EVOLVE-BLOCK-START\nx = 1\n# EVOLVE-BLOCK-END\nprint(x)\n"
    child = apply_rewrite(one, "```python\nx = 2\ny = 3\n```")
    assert child == one.replace("x = 1\n", "x = 2\ny = 3\n")
    assert apply_rewrite(one, "x = 5") == one.replace("x = 1", "x = 5")  # no fence: whole reply
    with pytest.raises(EditError, match="no EVOLVE-BLOCK markers but the program has 2"):
        apply_rewrite(PROGRAM, "```python\nx = 2\n```")
    assert apply_rewrite("a = 1\n", "```python\na = 2\n```") == "a = 2\n"


def test_rewrite_errors() -> None:
    one_block = "\n".join(PROGRAM.split("\n")[:13]) + "\n"
    with pytest.raises(EditError, match="1 EVOLVE block.*has 2"):
        apply_rewrite(PROGRAM, f"```python\n{one_block}```")
    with pytest.raises(EditError, match="broken EVOLVE markers.*line 1"):
        apply_rewrite(PROGRAM, "```python\n# EVOLVE-BLOCK-START\nx = 1\n```")
    with pytest.raises(EditError, match="empty"):
        apply_rewrite(PROGRAM, "```python\n```")
    with pytest.raises(EditError, match="parent has none"):
        apply_rewrite("a = 1\n", "```python\n# EVOLVE-BLOCK-START\na\n# EVOLVE-BLOCK-END\n```")


# ----------------------------------------------------------------------------- syntax


def test_python_syntax_error() -> None:
    assert python_syntax_error(PROGRAM) is None
    err = python_syntax_error("x = 1\ny = (\nz = 3\n")
    assert err is not None and err.startswith("line ")
    assert python_syntax_error("a = 1\nb = 2\ndef f(:\n") == "line 3: invalid syntax"
    assert python_syntax_error("def f():\nreturn 1\n") is not None  # IndentationError
    assert python_syntax_error("s = '\\d'\n") is None  # SyntaxWarning is not an error
    assert python_syntax_error("return 1\n") is not None  # compile-time error, not parse


def test_search_matches_whole_lines_only() -> None:
    """OpenEvolve's semantics (issue 10): SEARCH `x = 1` never edits inside `x = 10`."""
    code = "# EVOLVE-BLOCK-START\nx = 10\ny = 1\n# EVOLVE-BLOCK-END\n"
    with pytest.raises(EditError, match="not found"):
        apply_diff(code, diff("x = 1", "x = 2"))
    assert apply_diff(code, diff("y = 1", "y = 2")) == code.replace("y = 1", "y = 2")
    indented = "# EVOLVE-BLOCK-START\ndef f():\n    x = 10\n    x = 1\n# EVOLVE-BLOCK-END\n"
    child = apply_diff(indented, diff("x = 1", "x = 5"))  # the indented whole line, not x = 10
    assert child == indented.replace("    x = 1\n", "    x = 5\n")
