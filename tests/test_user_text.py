"""User text that reaches summary.md or the pull-request comment (accepted reasons, names) shows as
typed: it cannot end a table cell, open an HTML comment or tag, start a code span or a link."""

from __future__ import annotations

import re

import pytest

from core.loading import load_config
from core.summary import markdown_text, summary_markdown
from tools import pr_comment

HOSTILE = {
    "pipe": "ok | `evil` | extra cell | and more",
    "html-comment": "reviewed <!-- the rest of the table is hidden",
    "html-tag": "see <img src=x onerror=alert(1)> and <details><summary>hidden",
    "code-span": "``` broken fence and `open code",
    "link": "[approved by security](https://attacker.example/phish)",
    "escaped-pipe": "a backslash before the pipe \\| still one cell",
    "entity": "&lt;!-- an entity the user typed stays an entity",
    "emphasis": "**loud** _quiet_ ~~gone~~ # not a heading",
}
# Cell separators of a Markdown table row: `|` not escaped by a backslash.
CELL = re.compile(r"(?<!\\)\|")


def accepted_rows(summary: str) -> list[str]:
    section = summary.split("## Accepted on purpose", 1)[1]
    return [line for line in section.splitlines() if line.startswith("|")]


@pytest.mark.parametrize("reason", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_reason_keeps_the_accepted_table_whole(reason):
    config, _ = load_config({"accepted": {"recreateDowntime": reason, "scaleToZero": None}}, "dev")
    summary = summary_markdown(config, "dev")
    rows = accepted_rows(summary)
    assert len(rows) == 3, rows  # header, rule, one accepted warning
    assert [len(CELL.findall(row.replace("\\\\", ""))) for row in rows] == [4, 4, 4]
    assert "<" not in summary and "-->" not in summary
    assert "`" not in rows[2].replace("\\`", "").replace("`recreateDowntime`", "")
    assert "](" not in rows[2].replace("\\](", "")


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("a|b", "a\\|b"),
        ("<!--", "&lt;\\!--"),
        ("`x`", "\\`x\\`"),
        ("a\nb\r\nc\u2028d", "a b  c d"),
        ("&amp;", "&amp;amp;"),
        ("\\|", "\\\\\\|"),
        ("plain words, digits 0-9 and a-z.", "plain words, digits 0-9 and a-z."),
    ],
)
def test_markdown_text_escapes_each_structure_character(text, shown):
    assert markdown_text(text) == shown


def test_the_comment_marker_stays_hidden_whatever_the_stack_is_called():
    stack = "dev --> <b>visible</b> <!--"
    text = pr_comment.body(stack, "+ 1 to create", "### Sizing")
    assert text.count("-->") == 1 and text.count("<!--") == 1
    assert text.startswith(pr_comment.marker(stack)) and "<b>" not in text


def test_the_preview_cannot_close_its_code_fence():
    preview = "+ create\n```\n<!-- hide the rest\n   ````\n# Heading"
    text = pr_comment.body("dev", preview, "### Sizing")
    fences = [line for line in text.splitlines() if line.lstrip().startswith("```")]
    assert fences == ["```diff", "```"]
