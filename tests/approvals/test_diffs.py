"""The agent's preview: checked on arrival whatever it is, shown side by side in the console."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.template.loader import render_to_string
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.approvals.constants import PREVIEW_MAX_BYTES, PREVIEW_TABLE_ROWS_MAX
from apps.approvals.diffs import (
    VALUE_SHOWN_MAX,
    Cell,
    FieldRow,
    LineRow,
    PreviewInvalid,
    PreviewView,
    Segment,
    TableRow,
    Value,
    render_preview,
    validate_preview,
)

MINUS = "\u2212"  # the summaries print a true minus sign, as the console's other diffs do


def plain(text: str) -> Value:
    return Value((Segment(text),))


def marked(*parts: tuple[str, bool]) -> Value:
    return Value(tuple(Segment(text, changed) for text, changed in parts))


def render(preview: dict[str, Any]) -> PreviewView:
    view = render_preview(preview)
    assert view is not None
    assert view.error == ""
    return view


def invalid(preview: Any) -> str:
    with pytest.raises(PreviewInvalid) as caught:
        validate_preview(preview)
    return str(caught.value)


# --- validation -------------------------------------------------------------------------------


def test_each_shape_is_accepted_and_returned_as_sent() -> None:
    shapes = [
        {"format": "json", "current": None, "proposed": {"a": [1, 2.5, True, "x"]}},
        {"format": "text", "current": "", "proposed": "hello\n"},
        {"format": "table", "current": [{"id": 1}], "proposed": [], "key": "id"},
        {"format": "table", "current": [], "proposed": []},
        {"format": "unified", "diff": ""},
    ]
    for shape in shapes:
        assert validate_preview(shape) == shape


def test_a_preview_that_is_not_an_object_is_refused() -> None:
    for value in (None, [], "json", 3, True):
        assert invalid(value).startswith("preview must be an object such as")


def test_the_format_is_required_and_must_be_known() -> None:
    assert invalid({"current": 1, "proposed": 2}) == (
        "preview.format is required: one of json, text, table, unified."
    )
    for fmt in ("JSON", "xml", 1, None, ["json"]):
        message = invalid({"format": fmt, "current": 1, "proposed": 2})
        if fmt is None:
            assert message.startswith("preview.format is required")
        else:
            assert message == "preview.format must be one of json, text, table, unified."


def test_unknown_keys_are_named_with_the_keys_the_format_takes() -> None:
    message = invalid({"format": "unified", "diff": "", "current": "", "zzz": 1})
    assert message == (
        "preview has unknown keys: current, zzz; a unified preview takes format, diff."
    )
    many = {"format": "json", "current": 1, "proposed": 2, **{f"k{i}": i for i in range(8)}}
    assert "k0, k1, k2, k3, k4 and 3 more" in invalid(many)


def test_each_format_needs_its_own_parts_of_the_right_type() -> None:
    assert invalid({"format": "json", "proposed": 1}) == (
        "preview.current is required for a json preview (null when there is nothing yet)."
    )
    assert invalid({"format": "unified"}) == "preview.diff is required for a unified preview."
    assert invalid({"format": "text", "current": "a", "proposed": 2}) == (
        "preview.proposed must be a string for a text preview."
    )
    assert invalid({"format": "unified", "diff": ["@@"]}).startswith(
        "preview.diff must be a string"
    )
    for rows in ({"id": 1}, [1, 2], [{"id": 1}, "row"], None):
        assert invalid({"format": "table", "current": rows, "proposed": []}) == (
            "preview.current must be a list of objects for a table."
        )


def test_a_table_may_not_exceed_the_row_limit() -> None:
    rows = [{"id": i} for i in range(PREVIEW_TABLE_ROWS_MAX + 1)]
    assert invalid({"format": "table", "current": [], "proposed": rows}) == (
        f"preview.proposed has {PREVIEW_TABLE_ROWS_MAX + 1:,} rows; a table preview holds at "
        f"most {PREVIEW_TABLE_ROWS_MAX:,}. Send only the rows that change."
    )
    at_limit = rows[:PREVIEW_TABLE_ROWS_MAX]
    assert validate_preview({"format": "table", "current": at_limit, "proposed": []})


def test_every_table_row_needs_a_unique_plain_key() -> None:
    def table(current: list[Any], proposed: list[Any], **extra: Any) -> dict[str, Any]:
        return {"format": "table", "current": current, "proposed": proposed, **extra}

    assert invalid(table([{"id": 1}, {"name": "x"}], [])).startswith(
        "preview.current[1] has no 'id', the column that tells rows apart"
    )
    assert invalid(table([], [{"sku": "A"}], key="id")).startswith(
        "preview.proposed[0] has no 'id'"
    )
    assert invalid(table([{"id": 1}, {"id": 1}], [])).startswith(
        "preview.current has two rows with id = 1;"
    )
    assert invalid(table([{"id": [1]}], [])).startswith(
        "preview.current[0].id is a list or an object"
    )
    assert invalid(table([{"id": 1}], [], key="")) == (
        'preview.key must be the name of a column, e.g. "id".'
    )
    assert invalid(table([{}], [])).startswith("preview's first row is empty")
    # Keys compare as JSON: 1 and "1" and true are three different rows.
    assert validate_preview(table([{"id": 1}, {"id": "1"}, {"id": True}], []))


def test_a_preview_over_the_size_limit_is_refused_with_its_size() -> None:
    big = "x" * PREVIEW_MAX_BYTES
    message = invalid({"format": "text", "current": big, "proposed": ""})
    assert message.startswith("preview is 262,1")
    assert f"at most {PREVIEW_MAX_BYTES:,} are accepted" in message
    # Bytes, not characters: 100,000 two-byte characters are 200,000 bytes, twice is too many.
    wide = "é" * 100_000
    assert validate_preview({"format": "text", "current": wide, "proposed": ""})
    assert "bytes as JSON" in invalid({"format": "text", "current": wide, "proposed": wide})


def test_deep_nesting_is_refused_without_a_recursion_error() -> None:
    deep: Any = 1
    for _ in range(100_000):
        deep = [deep]
    assert invalid({"format": "json", "current": deep, "proposed": 1}) == (
        "preview is nested more than 32 levels deep; flatten it."
    )
    nested: Any = {}
    for _ in range(30):
        nested = {"a": nested}
    assert validate_preview({"format": "json", "current": nested, "proposed": None})


def test_what_json_or_postgres_cannot_hold_is_refused() -> None:
    def json_preview(current: Any) -> dict[str, Any]:
        return {"format": "json", "current": current, "proposed": None}

    assert invalid(json_preview(float("nan"))).endswith("NaN and Infinity are not numbers.")
    assert invalid(json_preview([float("-inf")])).endswith("NaN and Infinity are not numbers.")
    assert "NUL character" in invalid({"format": "text", "current": "a\x00b", "proposed": ""})
    assert "NUL character" in invalid(json_preview({"k\x00": 1}))
    assert invalid(json_preview("\ud800")) == "preview contains text that is not valid Unicode."
    assert invalid(json_preview({1: "a"})) == ("preview must be plain JSON: object keys are text.")
    for odd in ({1, 2}, (1, 2), b"x", object(), 10**5000):
        assert invalid(json_preview(odd)).startswith("preview must be plain JSON")


DIFF_LINES = [
    "@@ -1,2 +1,2 @@",
    "@@ -0,0 +1 @@",
    "@@ bad",
    "--- a/x",
    "+++ b/x",
    "diff --git a/x b/x",
    "-old",
    "+new",
    " same",
    "\\ No newline",
    "",
    "x",
]
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=40,
)
ROWS = st.lists(
    st.dictionaries(st.sampled_from(["id", "name", "qty", ""]), JSON_VALUES, max_size=4),
    max_size=6,
)
PREVIEWS = st.one_of(
    JSON_VALUES,
    st.fixed_dictionaries(
        {"format": st.sampled_from(["json", "text", "table", "unified", "xml"])},
        optional={
            "current": st.one_of(JSON_VALUES, st.text(), ROWS),
            "proposed": st.one_of(JSON_VALUES, st.text(), ROWS),
            "key": st.one_of(st.sampled_from(["id", "name", "", "missing"]), JSON_VALUES),
            "diff": st.one_of(
                st.text(),
                st.lists(st.sampled_from(DIFF_LINES)).map("\n".join),
                JSON_VALUES,
            ),
            "extra": JSON_VALUES,
        },
    ),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=PREVIEWS)
def test_any_value_is_either_a_clean_preview_or_preview_invalid(value: Any) -> None:
    try:
        clean = validate_preview(value)
    except PreviewInvalid as exc:
        assert str(exc)
        return
    assert clean == value
    json.dumps(clean, allow_nan=False)
    view = render_preview(clean)
    assert view is not None
    assert view.error == ""
    assert view.summary


# --- json -------------------------------------------------------------------------------------


def test_json_leaves_are_compared_by_pointer_path() -> None:
    view = render(
        {
            "format": "json",
            "current": {
                "customer": {"name": "Ann", "address": {"city": "Paris"}},
                "items": [{"sku": "A", "qty": 1}],
                "note": "call first",
            },
            "proposed": {
                "customer": {"name": "Ann", "address": {"city": "Lyon"}},
                "items": [{"sku": "A", "qty": 2}, {"sku": "B", "qty": 1}],
                "status": "open",
            },
        }
    )
    assert view.fields == (
        FieldRow("/customer/name", plain('"Ann"'), plain('"Ann"'), "same"),
        FieldRow(
            "/customer/address/city",
            marked(('"', False), ("Paris", True), ('"', False)),
            marked(('"', False), ("Lyon", True), ('"', False)),
            "changed",
        ),
        FieldRow("/items/0/sku", plain('"A"'), plain('"A"'), "same"),
        FieldRow("/items/0/qty", marked(("1", True)), marked(("2", True)), "changed"),
        FieldRow("/note", plain('"call first"'), None, "removed"),
        FieldRow("/items/1/sku", None, plain('"B"'), "added"),
        FieldRow("/items/1/qty", None, plain("1"), "added"),
        FieldRow("/status", None, plain('"open"'), "added"),
    )
    assert (view.changed, view.added, view.removed, view.same) == (2, 3, 1, 2)
    assert view.summary == "2 fields changed, 3 added, 1 removed"
    assert view.has_changes


def test_json_paths_escape_slashes_and_tildes_and_keep_empty_containers() -> None:
    view = render(
        {
            "format": "json",
            "current": {"a/b": {"~x": 1}, "tags": ["x"], "flag": 1},
            "proposed": {"a/b": {"~x": 1}, "tags": [], "flag": True},
        }
    )
    assert [(row.path, row.change) for row in view.fields] == [
        ("/a~1b/~0x", "same"),
        ("/tags/0", "removed"),
        ("/tags", "added"),
        ("/flag", "changed"),  # 1 and true are different JSON, though Python says 1 == True
    ]
    assert view.summary == "1 field changed, 1 added, 1 removed"


def test_a_json_preview_without_changes_says_so() -> None:
    view = render({"format": "json", "current": {"a": 1}, "proposed": {"a": 1}})
    assert view.summary == "No changes"
    assert not view.has_changes
    assert view.fields == (FieldRow("/a", plain("1"), plain("1"), "same"),)
    created = render({"format": "json", "current": None, "proposed": {"id": 7}})
    assert [(row.path, row.change) for row in created.fields] == [
        ("", "removed"),
        ("/id", "added"),
    ]


# --- text -------------------------------------------------------------------------------------


def test_text_lines_are_paired_side_by_side_with_the_changed_words_marked() -> None:
    view = render(
        {
            "format": "text",
            "current": "Dear Ann,\nthe quick brown fox\nregards\n",
            "proposed": "Dear Ann,\nthe quick red fox\nregards\nP.S. thanks\n",
        }
    )
    (block,) = view.blocks
    assert block.title == ""
    assert block.rows == (
        LineRow("equal", 1, plain("Dear Ann,"), 1, plain("Dear Ann,")),
        LineRow(
            "replace",
            2,
            marked(("the quick ", False), ("brown", True), (" fox", False)),
            2,
            marked(("the quick ", False), ("red", True), (" fox", False)),
        ),
        LineRow("equal", 3, plain("regards"), 3, plain("regards")),
        LineRow("insert", None, None, 4, plain("P.S. thanks")),
    )
    assert view.summary == f"+2 {MINUS}1 lines"
    assert (view.added, view.removed, view.changed, view.same) == (2, 1, 1, 2)


def test_lines_with_little_in_common_are_marked_whole() -> None:
    view = render({"format": "text", "current": "alpha beta gamma", "proposed": "x, y: z"})
    (row,) = view.blocks[0].rows
    assert row.kind == "replace"
    assert row.left == marked(("alpha beta gamma", True))
    assert row.right == marked(("x, y: z", True))


def test_deleted_lines_beyond_the_replacements_stand_alone() -> None:
    view = render({"format": "text", "current": "a1\nb\nc\n", "proposed": "a2\n"})
    assert [(r.kind, r.left_no, r.right_no) for r in view.blocks[0].rows] == [
        ("replace", 1, 1),
        ("delete", 2, None),
        ("delete", 3, None),
    ]
    assert view.summary == f"+1 {MINUS}3 lines"


def test_identical_or_empty_texts_have_no_changes() -> None:
    same = render({"format": "text", "current": "a\r\nb", "proposed": "a\nb\n"})
    assert same.summary == "No changes"
    assert [row.kind for row in same.blocks[0].rows] == ["equal", "equal"]
    empty = render({"format": "text", "current": "", "proposed": ""})
    assert empty.blocks == ()
    assert empty.summary == "No changes"


def test_a_very_long_value_is_cut_with_a_note_of_how_much() -> None:
    long_line = "word " * 500  # 2,500 characters
    view = render({"format": "text", "current": long_line, "proposed": long_line + "!"})
    row = view.blocks[0].rows[0]
    assert row.kind == "replace"
    assert row.left is not None and row.right is not None
    assert len(row.left.text) == VALUE_SHOWN_MAX
    assert row.left.cut == 500
    assert row.right.cut == 501
    assert row.left.cut_note == "… 500 more characters not shown"
    json_view = render({"format": "json", "current": {"a": "x" * 2001}, "proposed": None})
    before = json_view.fields[0].before
    assert before is not None
    assert (len(before.text), before.cut) == (VALUE_SHOWN_MAX, 3)  # 2,003 with the quotes


# --- table ------------------------------------------------------------------------------------


def test_table_rows_are_matched_by_key_and_changed_cells_marked() -> None:
    view = render(
        {
            "format": "table",
            "current": [
                {"id": 1, "name": "Ann", "qty": 1},
                {"id": 2, "name": "Bob", "qty": 5},
                {"id": 3, "name": "Cy", "qty": 2},
            ],
            "proposed": [
                {"id": 1, "name": "Ann", "qty": 3},
                {"id": 3, "name": "Cy", "qty": 2, "note": "vip"},
                {"id": 4, "name": "Di", "qty": 1},
            ],
        }
    )
    assert view.key == "id"
    assert view.columns == ("name", "qty", "note")
    assert view.rows == (
        TableRow(
            "1",
            "changed",
            (Cell(plain("Ann")), Cell(marked(("1", True)), True), Cell(None)),
            (Cell(plain("Ann")), Cell(marked(("3", True)), True), Cell(None)),
            ("qty",),
        ),
        TableRow("2", "removed", (Cell(plain("Bob")), Cell(plain("5")), Cell(None)), ()),
        TableRow(
            "3",
            "changed",
            (Cell(plain("Cy")), Cell(plain("2")), Cell(None, True)),
            (Cell(plain("Cy")), Cell(plain("2")), Cell(marked(("vip", True)), True)),
            ("note",),
        ),
        TableRow("4", "added", (), (Cell(plain("Di")), Cell(plain("1")), Cell(None))),
    )
    assert view.summary == "2 rows changed, 1 added, 1 removed"
    assert (view.changed, view.added, view.removed, view.same) == (2, 1, 1, 0)


def test_a_table_key_can_be_named_and_unchanged_rows_are_same() -> None:
    view = render(
        {
            "format": "table",
            "current": [{"name": "Ann", "email": "ann@example.com"}],
            "proposed": [{"email": "ann@example.com", "name": "Ann"}, {"email": "b@x.io"}],
            "key": "email",
        }
    )
    assert view.columns == ("name",)
    assert [(row.key, row.change) for row in view.rows] == [
        ("ann@example.com", "same"),
        ("b@x.io", "added"),
    ]
    assert view.summary == "1 row added"


# --- unified ----------------------------------------------------------------------------------

GIT_DIFF = """\
diff --git a/app/settings.py b/app/settings.py
index 83db48f..bf269f4 100644
--- a/app/settings.py
+++ b/app/settings.py
@@ -10,4 +10,3 @@ class Config:
 DEBUG = False
--- a SQL comment starts with two dashes
-TIMEOUT = 30
+TIMEOUT = 60
 RETRIES = 3
\\ No newline at end of file
diff --git a/docs/new.md b/docs/new.md
new file mode 100644
--- /dev/null
+++ b/docs/new.md
@@ -0,0 +1,2 @@
+# New
+Hello <b>world</b>
"""


def test_a_git_diff_becomes_one_block_of_side_by_side_rows_per_file() -> None:
    view = render({"format": "unified", "diff": GIT_DIFF})
    settings_file, new_file = view.blocks
    assert (settings_file.old_name, settings_file.new_name) == (
        "app/settings.py",
        "app/settings.py",
    )
    assert settings_file.title == "app/settings.py"
    assert settings_file.rows == (
        LineRow("note", note="index 83db48f..bf269f4 100644"),
        LineRow("hunk", note="@@ -10,4 +10,3 @@ class Config:"),
        LineRow("equal", 10, plain("DEBUG = False"), 10, plain("DEBUG = False")),
        LineRow(
            "replace",
            11,
            marked(("-- a SQL comment starts with two dashes", True)),
            11,
            marked(("TIMEOUT = 60", True)),
        ),
        LineRow("delete", 12, plain("TIMEOUT = 30")),
        LineRow("equal", 13, plain("RETRIES = 3"), 12, plain("RETRIES = 3")),
        LineRow("note", note="\\ No newline at end of file"),
    )
    assert (new_file.old_name, new_file.new_name, new_file.title) == (
        "",
        "docs/new.md",
        "docs/new.md",
    )
    assert new_file.rows == (
        LineRow("note", note="new file mode 100644"),
        LineRow("hunk", note="@@ -0,0 +1,2 @@"),
        LineRow("insert", None, None, 1, plain("# New")),
        LineRow("insert", None, None, 2, plain("Hello <b>world</b>")),
    )
    assert view.summary == f"+3 {MINUS}2 lines in 2 files"


def test_a_hunk_that_claims_more_lines_than_it_has_ends_at_the_next_file() -> None:
    diff = "diff --git a/x b/x\n@@ -1,9 +1,9 @@\n-a\n+b\ndiff --git a/y b/y\n@@ -1 +1 @@\n-c\n+d\n"
    view = render({"format": "unified", "diff": diff})
    assert [block.title for block in view.blocks] == ["x", "y"]
    assert [[row.kind for row in block.rows] for block in view.blocks] == [
        ["hunk", "replace"],
        ["hunk", "replace"],
    ]
    assert view.summary == f"+2 {MINUS}2 lines in 2 files"


def test_a_plain_diff_u_pairs_removed_and_added_runs_with_intraline_marks() -> None:
    diff = (
        "--- old.txt\t2024-01-01 10:00:00\n+++ new.txt\t2024-01-02 10:00:00\n"
        "@@ -1,3 +1,3 @@\n-limit: 10\n-mode: fast\n+limit: 20\n+mode: fast safe\n keep\n"
    )
    (block,) = render({"format": "unified", "diff": diff}).blocks
    assert block.title == "old.txt → new.txt"
    assert block.rows[1:3] == (
        LineRow(
            "replace", 1, marked(("limit: ", False), ("10", True)), 1,
            marked(("limit: ", False), ("20", True)),
        ),
        LineRow(
            "replace", 2, plain("mode: fast"), 2,
            marked(("mode: fast", False), (" safe", True)),
        ),
    )  # fmt: skip


def test_malformed_diff_lines_are_shown_never_refused() -> None:
    diff = "hello there\n@@ not a hunk @@\n@@ -1 +1 @@\n-a\n+b\n+c beyond the count\n*junk*\n"
    view = render({"format": "unified", "diff": diff})
    (block,) = view.blocks
    assert [(row.kind, row.note) for row in block.rows if row.kind in ("note", "hunk")] == [
        ("note", "hello there"),
        ("note", "@@ not a hunk @@"),
        ("hunk", "@@ -1 +1 @@"),
        ("note", "*junk*"),
    ]
    assert [row.kind for row in block.rows if row.kind not in ("note", "hunk")] == [
        "replace",
        "insert",  # past the header's count, still shown
    ]
    junk_in_hunk = render({"format": "unified", "diff": "@@ -1,3 +1,3 @@\n a\n?what\n b\n"})
    assert junk_in_hunk.blocks[0].rows[2] == LineRow(
        "equal", None, plain("?what"), None, plain("?what")
    )
    assert render({"format": "unified", "diff": ""}).summary == "No changes"


def test_a_stored_preview_that_no_longer_validates_renders_its_reason() -> None:
    view = render_preview({"format": "table", "current": "oops", "proposed": []})
    assert view is not None
    assert view.format == "table"
    assert view.error == "preview.current must be a list of objects for a table."
    assert render_preview(None) is None


# --- templates --------------------------------------------------------------------------------


def test_the_diff_template_marks_changes_and_escapes_values() -> None:
    view = render(
        {
            "format": "text",
            "current": "<script>alert(1)</script> brown fox\nsame\n",
            "proposed": "<script>alert(1)</script> red fox\nsame\n<img src=x onerror=y>\n",
        }
    )
    html = render_to_string("approvals/partials/diff.html", {"preview": view})
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; <mark>brown</mark> fox" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; <mark>red</mark> fox" in html
    assert (
        '<td class="diff-add"><span class="visually-hidden">added: </span>&lt;img src=x onerror=y&gt;</td>'
        in html
    )
    assert 'class="diff-del diff-change"' in html
    assert f"<strong>+2 {MINUS}1 lines</strong>" in html
    assert "<caption" in html
    assert '<th scope="col">Current</th>' in html and '<th scope="col">Proposed</th>' in html


def test_the_diff_template_renders_fields_rows_and_files() -> None:
    fields = render(
        {"format": "json", "current": {"a": "<b>x</b>"}, "proposed": {"a": "<b>y</b>", "n": 1}}
    )
    html = render_to_string("approvals/partials/diff.html", {"preview": fields})
    assert '<th scope="row"><code>/a</code> <span class="change-kind">changed</span></th>' in html
    assert "&quot;&lt;b&gt;<mark>x</mark>&lt;/b&gt;&quot;" in html
    assert '<td class="diff-add">1</td>' in html
    assert '<span class="empty-value">not there</span>' in html

    table = render(
        {"format": "table", "current": [{"id": 1, "v": "a"}], "proposed": [{"id": 2, "v": "<i>"}]}
    )
    html = render_to_string("approvals/partials/diff.html", {"preview": table})
    assert '<th scope="colgroup" colspan="1">Current</th>' in html
    assert '<td class="diff-del">a</td>' in html
    assert '<td class="diff-add">&lt;i&gt;</td>' in html

    files = render({"format": "unified", "diff": GIT_DIFF})
    html = render_to_string("approvals/partials/diff.html", {"preview": files})
    assert '<code>docs/new.md</code> <span class="muted">(new file)</span>' in html
    assert (
        '<tr class="diff-hunk"><td colspan="4"><code>@@ -10,4 +10,3 @@ class Config:</code></td></tr>'
        in html
    )
    assert "Hello &lt;b&gt;world&lt;/b&gt;" in html


def test_the_diff_template_has_an_empty_state_and_shows_a_broken_preview() -> None:
    html = render_to_string("approvals/partials/diff.html", {"preview": None})
    assert "The agent sent no preview of this change; judge it by its arguments." in html
    broken = render_preview({"format": "text", "current": "<b>", "proposed": 1})
    html = render_to_string("approvals/partials/diff.html", {"preview": broken})
    assert "preview.proposed must be a string for a text preview." in html
    cut = render({"format": "text", "current": "", "proposed": "y" * 2100})
    html = render_to_string("approvals/partials/diff.html", {"preview": cut})
    assert "… 100 more characters not shown" in html
