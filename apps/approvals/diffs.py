"""The preview an agent sends with a gated step, checked and turned into a side-by-side diff.

An approver decides on what would change, so the agent describes it: current and proposed
state (JSON, text or table rows) or a unified diff. :func:`validate_preview` runs when the
request arrives and is the only gate in front of the database, so it must answer every JSON
value (however deep, large or oddly typed) with a cleaned preview or :class:`PreviewInvalid`.
:func:`render_preview` runs in the console on what was stored; it builds plain data (rows,
segments, counts) and leaves every character of markup, and so all escaping, to the template
``approvals/partials/diff.html``.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from apps.registry.constants import PreviewFormat

from .constants import PREVIEW_MAX_BYTES, PREVIEW_TABLE_ROWS_MAX

# A single value (a line, a cell, a JSON leaf) longer than this is cut when shown.
VALUE_SHOWN_MAX = 2000
# Deeper than any record a person could read, shallow enough that nothing here recurses far.
PREVIEW_DEPTH_MAX = 32

FORMATS = tuple(PreviewFormat.values)
_KEYS: dict[str, tuple[str, ...]] = {
    PreviewFormat.JSON: ("format", "current", "proposed"),
    PreviewFormat.TEXT: ("format", "current", "proposed"),
    PreviewFormat.TABLE: ("format", "current", "proposed", "key"),
    PreviewFormat.UNIFIED: ("format", "diff"),
}
_REQUIRED: dict[str, tuple[str, ...]] = {
    PreviewFormat.JSON: ("current", "proposed"),
    PreviewFormat.TEXT: ("current", "proposed"),
    PreviewFormat.TABLE: ("current", "proposed"),
    PreviewFormat.UNIFIED: ("diff",),
}
# Intraline highlights compare words, not characters: "brown" → "red" reads as one change,
# not as a scatter of letters that happen to match.
_TOKEN = re.compile(r"\w+|\s+|[^\w\s]")
# Below this similarity two lines have little in common; marking every shared space and
# comma would be noise, so the whole line is marked instead.
_INTRALINE_MIN_RATIO = 0.3
# Token pairs SequenceMatcher may compare for one pair of lines (it is quadratic); a larger
# middle is marked changed as a whole.
_INTRALINE_BUDGET = 200 * 200
_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@(.*)$")
_GIT_HEADER = re.compile(r"^diff --git (?:a/)?(\S+) (?:b/)?(\S+)")


class PreviewInvalid(ValueError):
    """The agent's preview cannot be used; the message tells the agent's author what to fix."""


# --- validation -------------------------------------------------------------------------------


def validate_preview(value: Any) -> dict[str, Any]:
    """The preview, checked: a JSON object of one of the four shapes, within the size limits.

    Raises :class:`PreviewInvalid` and nothing else, whatever ``value`` is. Besides shape, it
    refuses what PostgreSQL's ``jsonb`` would refuse later with a 500 (NUL characters, lone
    surrogates, NaN), and nesting deeper than :data:`PREVIEW_DEPTH_MAX`.
    """
    if not isinstance(value, dict):
        raise PreviewInvalid(
            'preview must be an object such as {"format": "json", "current": …, "proposed": …}.'
        )
    _check_plain_json(value)
    try:
        encoded = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        size = len(encoded.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise PreviewInvalid("preview contains text that is not valid Unicode.") from exc
    except (ValueError, TypeError, RecursionError) as exc:
        raise PreviewInvalid(
            "preview must be plain JSON: text, numbers, true, false, null, lists and objects."
        ) from exc
    if size > PREVIEW_MAX_BYTES:
        raise PreviewInvalid(
            f"preview is {size:,} bytes as JSON; at most {PREVIEW_MAX_BYTES:,} are accepted. "
            "Send only the records that change, or a unified diff."
        )

    fmt = value.get("format")
    if fmt is None:
        raise PreviewInvalid(f"preview.format is required: one of {', '.join(FORMATS)}.")
    if not isinstance(fmt, str) or fmt not in FORMATS:
        raise PreviewInvalid(f"preview.format must be one of {', '.join(FORMATS)}.")
    allowed = _KEYS[fmt]
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        shown = ", ".join(_clip(k, 40) for k in unknown[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise PreviewInvalid(
            f"preview has unknown keys: {shown}{more}; a {fmt} preview takes {', '.join(allowed)}."
        )
    for key in _REQUIRED[fmt]:
        if key not in value:
            hint = " (null when there is nothing yet)" if fmt == PreviewFormat.JSON else ""
            raise PreviewInvalid(f"preview.{key} is required for a {fmt} preview{hint}.")

    if fmt == PreviewFormat.TEXT:
        for side in ("current", "proposed"):
            if not isinstance(value[side], str):
                raise PreviewInvalid(f"preview.{side} must be a string for a text preview.")
    elif fmt == PreviewFormat.UNIFIED:
        if not isinstance(value["diff"], str):
            raise PreviewInvalid("preview.diff must be a string: a unified diff (diff -u).")
    elif fmt == PreviewFormat.TABLE:
        _check_table(value)
    return {k: value[k] for k in allowed if k in value}


def _check_plain_json(value: Any) -> None:
    """Walk the value without recursion; stop at the first thing JSON or jsonb cannot hold.

    The walk is bounded: it gives up past the depth limit, and past as many nodes as the
    byte limit could encode (each takes at least a byte), before the size is even measured.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    nodes = 0
    while stack:
        item, depth = stack.pop()
        nodes += 1
        if nodes > PREVIEW_MAX_BYTES:
            raise PreviewInvalid(
                f"preview is larger than {PREVIEW_MAX_BYTES:,} bytes as JSON. "
                "Send only the records that change, or a unified diff."
            )
        if isinstance(item, dict | list) and depth > PREVIEW_DEPTH_MAX:
            raise PreviewInvalid(
                f"preview is nested more than {PREVIEW_DEPTH_MAX} levels deep; flatten it."
            )
        if isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    raise PreviewInvalid("preview must be plain JSON: object keys are text.")
                _check_text(key)
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            _check_text(item)
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise PreviewInvalid(
                    "preview must be plain JSON: NaN and Infinity are not numbers."
                )
        elif item is not None and not isinstance(item, bool | int):
            raise PreviewInvalid(
                "preview must be plain JSON: text, numbers, true, false, null, lists and objects."
            )


def _check_text(text: str) -> None:
    if "\x00" in text:
        raise PreviewInvalid("preview contains a NUL character (\\u0000), which cannot be stored.")


def _check_table(value: dict[str, Any]) -> None:
    for side in ("current", "proposed"):
        rows = value[side]
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise PreviewInvalid(f"preview.{side} must be a list of objects for a table.")
        if len(rows) > PREVIEW_TABLE_ROWS_MAX:
            raise PreviewInvalid(
                f"preview.{side} has {len(rows):,} rows; a table preview holds at most "
                f"{PREVIEW_TABLE_ROWS_MAX:,}. Send only the rows that change."
            )
    if "key" in value:
        key = value["key"]
        if not isinstance(key, str) or not key:
            raise PreviewInvalid('preview.key must be the name of a column, e.g. "id".')
    key = _table_key(value)
    if key is None:
        if value["current"] or value["proposed"]:
            raise PreviewInvalid(
                "preview's first row is empty, so it names no column to match rows by; "
                "give every row its key column, or name it with preview.key."
            )
        return
    for side in ("current", "proposed"):
        seen: set[str] = set()
        for index, row in enumerate(value[side]):
            if key not in row:
                raise PreviewInvalid(
                    f"preview.{side}[{index}] has no {_clip(key, 40)!r}, the column that "
                    "tells rows apart; every row needs it (or name another with preview.key)."
                )
            cell = row[key]
            if isinstance(cell, dict | list):
                raise PreviewInvalid(
                    f"preview.{side}[{index}].{_clip(key, 40)} is a list or an object; "
                    "a key must be text or a number."
                )
            identity = _canonical(cell)
            if identity in seen:
                raise PreviewInvalid(
                    f"preview.{side} has two rows with {_clip(key, 40)} = "
                    f"{_clip(_cell_text(cell), 40)}; the key column must tell rows apart "
                    "(name another with preview.key)."
                )
            seen.add(identity)


def _table_key(preview: dict[str, Any]) -> str | None:
    """The column rows are matched by: ``key`` if given, else the first column of the first
    row (of the current rows, or of the proposed ones when there are none yet)."""
    key = preview.get("key")
    if isinstance(key, str) and key:
        return key
    for side in ("current", "proposed"):
        rows = preview.get(side)
        if isinstance(rows, list) and rows and isinstance(rows[0], dict):
            return next(iter(rows[0]), None)
    return None


# --- what the template renders ----------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """A run of characters inside a value; ``changed`` ones are wrapped in ``<mark>``."""

    text: str
    changed: bool = False


@dataclass(frozen=True)
class Value:
    """One value as shown: its segments, and how many characters were cut past
    :data:`VALUE_SHOWN_MAX` (0: shown whole)."""

    segments: tuple[Segment, ...]
    cut: int = 0

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.segments)

    @property
    def cut_note(self) -> str:
        return f"… {self.cut:,} more character{'s' if self.cut != 1 else ''} not shown"


@dataclass(frozen=True)
class FieldRow:
    """A JSON preview's leaf at ``path``; ``before``/``after`` are None where it is absent."""

    path: str
    before: Value | None
    after: Value | None
    change: str  # added | removed | changed | same


@dataclass(frozen=True)
class LineRow:
    """One line of a side-by-side text diff.

    ``kind`` is equal, replace, insert or delete for lines; for a replace both sides carry
    intraline segments. ``hunk`` (an ``@@`` header) and ``note`` (``\\ No newline at end of
    file``, ``index …``) rows span both sides and carry only ``note``. A malformed line of a
    unified diff is an equal row without line numbers.
    """

    kind: str
    left_no: int | None = None
    left: Value | None = None
    right_no: int | None = None
    right: Value | None = None
    note: str = ""


@dataclass(frozen=True)
class LineBlock:
    """The lines of one file (a unified diff has one block per file; a text preview one)."""

    old_name: str
    new_name: str
    rows: tuple[LineRow, ...]

    @property
    def title(self) -> str:
        if self.old_name == self.new_name or not self.new_name:
            return self.old_name
        if not self.old_name:
            return self.new_name
        return f"{self.old_name} → {self.new_name}"


@dataclass(frozen=True)
class Cell:
    """A table cell; ``value`` is None when the row has no such column."""

    value: Value | None
    changed: bool = False


@dataclass(frozen=True)
class TableRow:
    """A row matched by its key; ``before`` is empty for an added row, ``after`` for a
    removed one. Cells follow :attr:`PreviewView.columns`."""

    key: str
    change: str  # added | removed | changed | same
    before: tuple[Cell, ...]
    after: tuple[Cell, ...]
    changed_columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class PreviewView:
    """A preview ready for ``approvals/partials/diff.html``.

    The counts mean fields (json), rows (table) or lines (text, unified: ``changed`` counts
    replaced pairs, which ``added`` and ``removed`` count too, as diff -u does). When a stored
    preview no longer passes :func:`validate_preview`, ``error`` says why and there are no rows.
    """

    format: str
    summary: str
    added: int = 0
    removed: int = 0
    changed: int = 0
    same: int = 0
    fields: tuple[FieldRow, ...] = ()  # json
    blocks: tuple[LineBlock, ...] = ()  # text, unified
    key: str = ""  # table
    columns: tuple[str, ...] = ()  # table, without the key column
    rows: tuple[TableRow, ...] = ()  # table
    error: str = ""

    @property
    def has_changes(self) -> bool:
        return bool(self.added or self.removed or self.changed)


def render_preview(preview: dict[str, Any] | None) -> PreviewView | None:
    """The preview as side-by-side rows; None when the agent sent none.

    It validates again: what is stored may predate a rule, and a console page must show a
    reason rather than fail.
    """
    if preview is None:
        return None
    try:
        clean = validate_preview(preview)
    except PreviewInvalid as exc:
        fmt = preview.get("format") if isinstance(preview, dict) else None
        return PreviewView(
            format=fmt if isinstance(fmt, str) and fmt in FORMATS else "",
            summary="The preview could not be shown",
            error=str(exc),
        )
    fmt = clean["format"]
    if fmt == PreviewFormat.JSON:
        return _render_json(clean["current"], clean["proposed"])
    if fmt == PreviewFormat.TEXT:
        return _render_text(clean["current"], clean["proposed"])
    if fmt == PreviewFormat.TABLE:
        return _render_table(clean)
    return _render_unified(clean["diff"])


# --- json -------------------------------------------------------------------------------------


def _render_json(current: Any, proposed: Any) -> PreviewView:
    before = dict(_flatten(current))
    after = dict(_flatten(proposed))
    rows: list[FieldRow] = []
    counts = {"added": 0, "removed": 0, "changed": 0, "same": 0}
    for path in _merged_order(list(before), list(after)):
        if path not in after:
            change = "removed"
            row = FieldRow(path, _shown(_json_text(before[path])), None, change)
        elif path not in before:
            change = "added"
            row = FieldRow(path, None, _shown(_json_text(after[path])), change)
        elif _canonical(before[path]) == _canonical(after[path]):
            change = "same"
            row = FieldRow(
                path, _shown(_json_text(before[path])), _shown(_json_text(after[path])), change
            )
        else:
            change = "changed"
            left, right = _compared(_json_text(before[path]), _json_text(after[path]))
            row = FieldRow(path, left, right, change)
        counts[change] += 1
        rows.append(row)
    return PreviewView(
        format=PreviewFormat.JSON.value,
        summary=_counted("field", counts),
        fields=tuple(rows),
        added=counts["added"],
        removed=counts["removed"],
        changed=counts["changed"],
        same=counts["same"],
    )


def _flatten(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Leaves by JSON pointer (``/items/0/qty``); an empty object or list is a leaf itself, so
    emptying a list shows as a change rather than as nothing. Depth is bounded by validation."""
    if isinstance(value, dict) and value:
        for key, child in value.items():
            yield from _flatten(child, f"{path}/{_escape(key)}")
    elif isinstance(value, list) and value:
        for index, child in enumerate(value):
            yield from _flatten(child, f"{path}/{index}")
    else:
        yield path, value


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


# --- text and unified -------------------------------------------------------------------------


def _render_text(current: str, proposed: str) -> PreviewView:
    old, new = _lines(current), _lines(proposed)
    rows: list[LineRow] = []
    matcher = difflib.SequenceMatcher(None, old, new)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            for offset in range(i2 - i1):
                shown = _shown(old[i1 + offset])
                rows.append(LineRow("equal", i1 + offset + 1, shown, j1 + offset + 1, shown))
        else:
            rows.extend(
                _paired(
                    [(i + 1, old[i]) for i in range(i1, i2)],
                    [(j + 1, new[j]) for j in range(j1, j2)],
                )
            )
    block = LineBlock("", "", tuple(rows))
    return _line_view(PreviewFormat.TEXT.value, [block] if rows else [], by_file=False)


def _render_unified(diff: str) -> PreviewView:
    return _line_view(
        PreviewFormat.UNIFIED.value, _UnifiedParser(_lines(diff)).blocks(), by_file=True
    )


def _line_view(fmt: str, blocks: list[LineBlock], *, by_file: bool) -> PreviewView:
    counts = {"added": 0, "removed": 0, "changed": 0, "same": 0}
    for block in blocks:
        for row in block.rows:
            if row.kind == "equal":
                counts["same"] += 1
            elif row.kind == "replace":
                counts["changed"] += 1
                counts["added"] += 1
                counts["removed"] += 1
            elif row.kind == "insert":
                counts["added"] += 1
            elif row.kind == "delete":
                counts["removed"] += 1
    if counts["added"] or counts["removed"]:
        # A true minus sign, as the console's other diffs print it.
        summary = f"+{counts['added']:,} −{counts['removed']:,} lines"  # noqa: RUF001
        files = sum(1 for block in blocks if block.old_name or block.new_name)
        if by_file and files > 1:
            summary += f" in {files} files"
    else:
        summary = "No changes"
    return PreviewView(
        format=fmt,
        summary=summary,
        added=counts["added"],
        removed=counts["removed"],
        changed=counts["changed"],
        same=counts["same"],
        blocks=tuple(blocks),
    )


def _lines(text: str) -> list[str]:
    """Lines split on newlines only (``str.splitlines`` would also split on form feeds and
    other separators a file may contain), without their ``\\r``."""
    if not text:
        return []
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def _paired(
    deleted: Sequence[tuple[int | None, str]], inserted: Sequence[tuple[int | None, str]]
) -> list[LineRow]:
    """A run of removed lines next to a run of added ones: side by side as replacements,
    with intraline segments, the longer run's remainder as plain deletes or inserts."""
    rows: list[LineRow] = []
    for index in range(max(len(deleted), len(inserted))):
        if index < len(deleted) and index < len(inserted):
            (left_no, left), (right_no, right) = deleted[index], inserted[index]
            left_value, right_value = _compared(left, right)
            rows.append(LineRow("replace", left_no, left_value, right_no, right_value))
        elif index < len(deleted):
            left_no, left = deleted[index]
            rows.append(LineRow("delete", left_no=left_no, left=_shown(left)))
        else:
            right_no, right = inserted[index]
            rows.append(LineRow("insert", right_no=right_no, right=_shown(right)))
    return rows


class _UnifiedParser:
    """Reads ``diff -u`` / ``git diff`` output leniently: whatever it does not recognise is
    shown (as a note outside hunks, as a context line inside one), never refused.

    Hunk line counts are followed so that a removed line reading ``-- x`` (shown as
    ``--- x``) is not taken for a file header.
    """

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.finished: list[LineBlock] = []
        self.old_name = ""
        self.new_name = ""
        self.rows: list[LineRow] = []
        self.has_hunks = False
        self.in_hunk = False
        self.old_left = 0  # lines the hunk header says are still to come
        self.new_left = 0
        self.left_no = 0
        self.right_no = 0
        self.deleted: list[tuple[int | None, str]] = []
        self.inserted: list[tuple[int | None, str]] = []
        self.notes: list[str] = []

    def blocks(self) -> list[LineBlock]:
        index = 0
        while index < len(self.lines):
            line = self.lines[index]
            following = self.lines[index + 1] if index + 1 < len(self.lines) else ""
            index += 1
            hunk = _HUNK.match(line) if line.startswith("@@") else None
            if hunk:
                self._flush()
                self._start_hunk(hunk, line)
            elif line.startswith("diff --git "):
                # Never a line of a hunk (those start with " ", "-", "+" or "\\"), so it
                # starts the next file even when the last hunk's counts were wrong.
                self._new_file()
                names = _GIT_HEADER.match(line)
                if names:
                    self.old_name, self.new_name = names.group(1), names.group(2)
            elif self.in_hunk and (self.old_left > 0 or self.new_left > 0):
                self._body(line)
            elif line.startswith("--- ") and following.startswith("+++ "):
                if self.has_hunks:
                    self._new_file()
                self._flush()
                self.old_name, self.new_name = _file_names(line[4:], following[4:])
                index += 1
            elif self.in_hunk and line[:1] in (" ", "-", "+", "\\"):
                # The header's counts ran out early; keep reading the hunk rather than
                # dropping lines the agent sent.
                self._body(line)
            elif not line.strip():
                continue  # a blank line between files says nothing
            else:
                self._flush()
                self.rows.append(LineRow("note", note=_clip(line, VALUE_SHOWN_MAX)))
        self._new_file()
        return self.finished

    def _start_hunk(self, match: re.Match[str], line: str) -> None:
        old_start, old_count, new_start, new_count, _ = match.groups()
        self.left_no = int(old_start)
        self.right_no = int(new_start)
        self.old_left = 1 if old_count is None else int(old_count)
        self.new_left = 1 if new_count is None else int(new_count)
        self.in_hunk = True
        self.has_hunks = True
        self.rows.append(LineRow("hunk", note=_clip(line, VALUE_SHOWN_MAX)))

    def _body(self, line: str) -> None:
        marker, text = line[:1], line[1:]
        if marker == "-":
            self.deleted.append((self.left_no, text))
            self.left_no += 1
            self.old_left -= 1
        elif marker == "+":
            self.inserted.append((self.right_no, text))
            self.right_no += 1
            self.new_left -= 1
        elif marker == "\\":
            # "\ No newline at end of file" belongs to the line before it; shown after the run
            # so that it does not split a removed line from its replacement.
            self.notes.append(_clip(line, VALUE_SHOWN_MAX))
        elif marker in (" ", ""):
            self._flush()
            shown = _shown(text)
            self.rows.append(LineRow("equal", self.left_no, shown, self.right_no, shown))
            self.left_no += 1
            self.right_no += 1
            self.old_left -= 1
            self.new_left -= 1
        else:
            self._flush()
            shown = _shown(line)
            self.rows.append(LineRow("equal", None, shown, None, shown))

    def _flush(self) -> None:
        self.rows.extend(_paired(self.deleted, self.inserted))
        self.rows.extend(LineRow("note", note=note) for note in self.notes)
        self.deleted, self.inserted, self.notes = [], [], []

    def _new_file(self) -> None:
        self._flush()
        if self.rows or self.old_name or self.new_name:
            self.finished.append(LineBlock(self.old_name, self.new_name, tuple(self.rows)))
        self.old_name = self.new_name = ""
        self.rows = []
        self.has_hunks = self.in_hunk = False
        self.old_left = self.new_left = 0


def _file_names(old_header: str, new_header: str) -> tuple[str, str]:
    """``a/src/x.py\\t2024-01-01 …`` and ``b/src/x.py`` → ``src/x.py`` twice (git's prefixes
    go only when both sides have them); ``/dev/null`` means no such file."""
    old = old_header.split("\t", 1)[0].strip()
    new = new_header.split("\t", 1)[0].strip()
    old = "" if old == "/dev/null" else old
    new = "" if new == "/dev/null" else new
    if (not old or old.startswith("a/")) and (not new or new.startswith("b/")):
        old, new = old[2:], new[2:]
    return _clip(old, 300), _clip(new, 300)


# --- table ------------------------------------------------------------------------------------


def _render_table(preview: dict[str, Any]) -> PreviewView:
    key = _table_key(preview)
    current: list[dict[str, Any]] = preview["current"]
    proposed: list[dict[str, Any]] = preview["proposed"]
    if key is None:  # both sides empty: validation allows nothing else without a key
        return PreviewView(format=PreviewFormat.TABLE.value, summary="No changes")
    columns = [c for c in _merged_order(_columns(current), _columns(proposed)) if c != key]
    before = {_canonical(row[key]): row for row in current}
    after = {_canonical(row[key]): row for row in proposed}
    counts = {"added": 0, "removed": 0, "changed": 0, "same": 0}
    rows: list[TableRow] = []
    for identity in _merged_order(list(before), list(after)):
        old, new = before.get(identity), after.get(identity)
        if new is None and old is not None:
            label = _cell_text(old[key])
            row = TableRow(label, "removed", tuple(_cell(old, c) for c in columns), ())
        elif old is None and new is not None:
            label = _cell_text(new[key])
            row = TableRow(label, "added", (), tuple(_cell(new, c) for c in columns))
        elif old is not None and new is not None:
            row = _compared_row(_cell_text(old[key]), old, new, columns)
        else:  # pragma: no cover - every identity comes from one side or the other
            continue
        counts[row.change] += 1
        rows.append(row)
    return PreviewView(
        format=PreviewFormat.TABLE.value,
        summary=_counted("row", counts),
        key=key,
        columns=tuple(columns),
        rows=tuple(rows),
        added=counts["added"],
        removed=counts["removed"],
        changed=counts["changed"],
        same=counts["same"],
    )


def _compared_row(
    label: str, old: dict[str, Any], new: dict[str, Any], columns: list[str]
) -> TableRow:
    left: list[Cell] = []
    right: list[Cell] = []
    changed: list[str] = []
    for column in columns:
        present_old, present_new = column in old, column in new
        if present_old and present_new and _canonical(old[column]) == _canonical(new[column]):
            left.append(_cell(old, column))
            right.append(_cell(new, column))
        elif present_old and present_new:
            before, after = _compared(_cell_text(old[column]), _cell_text(new[column]))
            left.append(Cell(before, changed=True))
            right.append(Cell(after, changed=True))
            changed.append(column)
        elif present_old or present_new:
            # The column appears or disappears: the side that has it is marked whole.
            left.append(
                Cell(_shown(_cell_text(old[column]), changed=True), True)
                if present_old
                else Cell(None, True)
            )
            right.append(
                Cell(_shown(_cell_text(new[column]), changed=True), True)
                if present_new
                else Cell(None, True)
            )
            changed.append(column)
        else:
            left.append(Cell(None))
            right.append(Cell(None))
    change = "changed" if changed else "same"
    return TableRow(label, change, tuple(left), tuple(right), tuple(changed))


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row))
    return list(seen)


def _cell(row: dict[str, Any], column: str) -> Cell:
    return Cell(_shown(_cell_text(row[column])) if column in row else None)


def _cell_text(value: Any) -> str:
    """Text as itself (a table reads like a spreadsheet); anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


# --- shared -----------------------------------------------------------------------------------


def _merged_order(first: list[str], second: list[str]) -> list[str]:
    """Both lists in one order that keeps each one's own: what only ``second`` has lands
    where it sits in ``second`` (next to its neighbours), not at the end."""
    merged: dict[str, None] = {}
    matcher = difflib.SequenceMatcher(None, first, second, autojunk=False)
    for _, i1, i2, j1, j2 in matcher.get_opcodes():
        merged.update(dict.fromkeys(first[i1:i2]))
        merged.update(dict.fromkeys(second[j1:j2]))
    return list(merged)


def _canonical(value: Any) -> str:
    """Equality as JSON sees it: ``1`` and ``true`` differ (Python says they are equal)."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _cut(text: str) -> tuple[str, int]:
    if len(text) <= VALUE_SHOWN_MAX:
        return text, 0
    return text[:VALUE_SHOWN_MAX], len(text) - VALUE_SHOWN_MAX


def _shown(text: str, *, changed: bool = False) -> Value:
    kept, cut = _cut(text)
    return Value((Segment(kept, changed),) if kept else (), cut)


def _compared(old: str, new: str) -> tuple[Value, Value]:
    """Two versions of a value with the words that differ marked on each side.

    The shared start and end are taken off first (one edit in a long line is the usual case,
    and finding it costs nothing); SequenceMatcher only sees the middle, and only while the
    middle is small enough: it is quadratic, and this runs once per replaced line.
    """
    old_kept, old_cut = _cut(old)
    new_kept, new_cut = _cut(new)
    a, b = _TOKEN.findall(old_kept), _TOKEN.findall(new_kept)
    head = 0
    while head < len(a) and head < len(b) and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < len(a) - head and tail < len(b) - head and a[-1 - tail] == b[-1 - tail]:
        tail += 1
    a_mid, b_mid = a[head : len(a) - tail], b[head : len(b) - tail]
    left: list[tuple[str, bool]] = [("".join(a[:head]), False)]
    right: list[tuple[str, bool]] = [("".join(b[:head]), False)]
    # Similarity counts words and punctuation only: shared spaces make any two lines alike.
    matched = _solid(a[:head]) + _solid(a[len(a) - tail :])
    if a_mid and b_mid and len(a_mid) * len(b_mid) <= _INTRALINE_BUDGET:
        matcher = difflib.SequenceMatcher(None, a_mid, b_mid, autojunk=False)
        for tag, i1, i2, j1, j2 in matcher.get_opcodes():
            left.append(("".join(a_mid[i1:i2]), tag != "equal"))
            right.append(("".join(b_mid[j1:j2]), tag != "equal"))
            matched += _solid(a_mid[i1:i2]) if tag == "equal" else 0
    else:
        left.append(("".join(a_mid), True))
        right.append(("".join(b_mid), True))
    left.append(("".join(a[len(a) - tail :]), False))
    right.append(("".join(b[len(b) - tail :]), False))
    if 2 * matched < _INTRALINE_MIN_RATIO * (_solid(a) + _solid(b)):
        left, right = [(old_kept, True)], [(new_kept, True)]
    return Value(_joined(left), old_cut), Value(_joined(right), new_cut)


def _solid(tokens: list[str]) -> int:
    return sum(1 for token in tokens if not token.isspace())


def _joined(parts: list[tuple[str, bool]]) -> tuple[Segment, ...]:
    """Adjacent parts with the same flag as one segment; empty parts dropped."""
    segments: list[Segment] = []
    for text, changed in parts:
        if not text:
            continue
        if segments and segments[-1].changed == changed:
            segments[-1] = Segment(segments[-1].text + text, changed)
        else:
            segments.append(Segment(text, changed))
    return tuple(segments)


def _counted(noun: str, counts: dict[str, int]) -> str:
    """``3 fields changed, 1 added``: the noun once, on the first count that is not zero."""
    parts: list[str] = []
    for verb in ("changed", "added", "removed"):
        n = counts[verb]
        if not n:
            continue
        if parts:
            parts.append(f"{n:,} {verb}")
        else:
            parts.append(f"{n:,} {noun}{'' if n == 1 else 's'} {verb}")
    return ", ".join(parts) if parts else "No changes"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
