"""The one pull-request comment of a stack's preview: the Pulumi diff, the sizing change, the cost
and what fits, found again and edited by its own hidden marker, never by "the bot's last comment".

Why not `gh pr comment --edit-last`: it edits the token's last comment on the pull request, which
was the one pulumi/actions had just posted, so the Pulumi diff was overwritten on every push and
never seen. Here pulumi/actions posts nothing (comment-on-pr off) and this edits only the comment
whose body starts with the marker and whose author is the posting token's bot.

GitHub REST (docs.github.com/rest/issues/comments): GET .../issues/{n}/comments (paged),
PATCH .../issues/comments/{id}, POST .../issues/{n}/comments; a body holds at most 65,536 characters.

    python -m tools.pr_comment --repo OWNER/NAME --pr N --stack dev --preview FILE --sizing FILE
    (GH_TOKEN in the environment; GITHUB_API_URL as in a workflow, default https://api.github.com)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.request
from pathlib import Path
from typing import Any

from core.summary import markdown_text

# GitHub's limit on a comment body, less room for the marker, headings and fences.
MAX_BODY = 65_536
PREVIEW_BUDGET = 60_000
# The author of comments posted with a workflow's GITHUB_TOKEN.
BOT = "github-actions[bot]"


def marker(stack: str) -> str:
    # Escaped, so that a stack name holding `-->` cannot end the hidden marker and show the rest.
    return f"<!-- llamacpp-aks preview: {markdown_text(stack)} -->"


def trim(text: str, budget: int) -> str:
    """`text`, or its end (Pulumi's summary is last) with a line saying what was cut."""
    if len(text) <= budget:
        return text
    return f"(first {len(text) - budget} characters cut; the job log has all of it)\n" + text[-budget:]


def fenced(text: str) -> str:
    """Text that cannot close the code fence it sits in: CommonMark closes a ``` fence only with a
    line of three or more backticks (indented at most three spaces), so every run of three
    backticks becomes quotes."""
    return text.replace("```", "'''")


def body(stack: str, preview: str, sizing: str) -> str:
    """Marker, the Pulumi diff, then the sizing change, cost and fit (make diff + summary.md)."""
    text = "\n".join(
        [
            marker(stack),
            f"### `pulumi preview` of {markdown_text(stack)}",
            "```diff",
            fenced(trim(preview.strip(), PREVIEW_BUDGET)),
            "```",
            sizing.strip(),
            "",
        ]
    )
    return text[:MAX_BODY]


class GitHub:
    def __init__(self, api: str, repo: str, token: str):
        self.api, self.repo, self.token = api.rstrip("/"), repo, token

    def call(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        request = urllib.request.Request(
            f"{self.api}/repos/{self.repo}/{path}",
            data=json.dumps(payload).encode() if payload is not None else None,
            method=method,
            headers={
                "Authorization": f"Bearer {self.token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
            },
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)

    def comments(self, pr: int) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        page = 1
        while batch := self.call("GET", f"issues/{pr}/comments?per_page=100&page={page}"):
            found += batch
            page += 1
        return found


def upsert(github: GitHub, pr: int, stack: str, text: str, author: str = BOT) -> int:
    """Edits this stack's marked comment by `author`, or posts one; returns its id."""
    mine = [
        c
        for c in github.comments(pr)
        if (c.get("user") or {}).get("login") == author and str(c.get("body", "")).startswith(marker(stack))
    ]
    if mine:
        return int(github.call("PATCH", f"issues/comments/{mine[0]['id']}", {"body": text})["id"])
    return int(github.call("POST", f"issues/{pr}/comments", {"body": text})["id"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", required=True)
    parser.add_argument("--pr", type=int, required=True)
    parser.add_argument("--stack", required=True)
    parser.add_argument("--preview", type=Path, required=True)
    parser.add_argument("--sizing", type=Path, required=True)
    args = parser.parse_args(argv)
    github = GitHub(os.environ.get("GITHUB_API_URL", "https://api.github.com"), args.repo, os.environ["GH_TOKEN"])
    text = body(args.stack, args.preview.read_text(), args.sizing.read_text())
    print(f"comment {upsert(github, args.pr, args.stack, text)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
