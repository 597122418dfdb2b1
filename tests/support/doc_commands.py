"""The commands the project's Markdown shows a user, found in the Markdown itself.

What counts as a command:
- every command of a fenced ```bash / sh / shell / console block (a command runs
  on while a quote is open or a line ends in `\\`); what the text promises about it
  is the `# ...` comment on its line or a `# -> ...` line right under it
  (`# -> 201 {"id": "<test>"}`); other comment lines are headings;
- an inline code span whose first word (after `VAR=value` assignments) is a program
  a user types (`make lint`, `callmeter runs list`, `python bench/ui.py`), or a
  script under examples/ (`examples/subscribe_run.py`); a bare program name
  (`callmeter`) names it and is not a command;
- an inline code span `METHOD /path` (`GET /api/v1/workers`): an API request.

A command that cannot run in tests/integration/test_doc_commands.py is marked
in the Markdown with an HTML comment on its own line (rendered as nothing),
right before the block or paragraph holding it:

    <!-- not-run: REASON -->              every command of the next block/paragraph
    <!-- not-run `make test`: REASON -->  only its commands starting with `make test`

Pure: reads text, starts nothing.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

# Markdown pages that show commands; a new page under docs/ is included by itself.
PAGES = ("README.md", "docs/*.md", "infra/*.md", "examples/*.md")
SHELL_FENCES = {"bash", "sh", "shell", "console"}
PROGRAMS = {
    "make",
    "callmeter",
    "curl",
    "python",
    "python3",
    "pytest",
    "pip",
    "kubectl",
    "docker",
    "docker-compose",
    "helm",
    "nats",
    "nats-server",
    "psql",
    "ruff",
    "mypy",
    "git",
    "bash",
    "sh",
    "source",
    "export",
    "cd",
    "sipp",
    "kamailio",
    "tshark",
}
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_REQUEST = re.compile(rf"({'|'.join(METHODS)}) (/\S*)")
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=\S*")
_MARKER = re.compile(r"<!--\s*not-run(?:\s+`([^`]+)`)?\s*:\s*(.*?)\s*-->")
_FENCE = re.compile(r"(`{3,}|~{3,})\s*([\w-]*)")
_SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.S)


@dataclass(frozen=True)
class Command:
    page: str  # e.g. "README.md"
    line: int  # 1-based, where the command starts
    kind: str  # "block" (a line of a shell block), "inline" or "request"
    text: str  # the command without its comment; inline spans on one line
    comment: str = ""  # what a block's `# ...` says about it
    not_run: str | None = None  # the reason given by a not-run marker

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


@dataclass(frozen=True)
class Marker:
    page: str
    line: int
    prefix: str | None  # None: every command of the next element
    reason: str


def pages(root: Path) -> list[Path]:
    found = {p for pattern in PAGES for p in root.glob(pattern)}
    return sorted(found, key=lambda p: (p.relative_to(root).as_posix() != "README.md", p))


def inventory(root: Path) -> tuple[list[Command], list[Marker]]:
    """Every command of every page, and every not-run marker."""
    commands: list[Command] = []
    markers: list[Marker] = []
    for path in pages(root):
        found, marks = parse(path.relative_to(root).as_posix(), path.read_text())
        commands += found
        markers += marks
    return commands, markers


def unused_markers(commands: list[Command], markers: list[Marker]) -> list[Marker]:
    """Markers that mark nothing: a command they meant was renamed or removed."""
    used = {(c.page, c.not_run) for c in commands if c.not_run is not None}
    return [m for m in markers if (m.page, _reason(m)) not in used]


def _reason(marker: Marker) -> str:
    return f"{marker.reason} [{marker.page}:{marker.line}]"


def parse(page: str, text: str) -> tuple[list[Command], list[Marker]]:
    """The commands and markers of one Markdown page."""
    commands: list[Command] = []
    markers: list[Marker] = []
    waiting: list[Marker] = []  # markers for the next block or paragraph
    for start, lines, fence in _elements(text.splitlines()):
        if fence is None:
            while lines and (found := _MARKER.fullmatch(lines[0].strip())):
                waiting.append(Marker(page, start, found[1], found[2]))
                markers.append(waiting[-1])
                start, lines = start + 1, lines[1:]
            if not lines:
                continue  # markers alone: they apply to what follows
            element = _inline_commands(page, start, lines)
        elif fence in SHELL_FENCES:
            element = _block_commands(page, start, lines)
        else:
            element = []
        commands += [_apply(c, waiting) for c in element]
        waiting = []
    return commands, markers


def _apply(command: Command, markers: list[Marker]) -> Command:
    for m in markers:
        if m.prefix is None or command.text.startswith(m.prefix):
            return Command(
                command.page, command.line, command.kind, command.text, command.comment, _reason(m)
            )
    return command


def _elements(lines: list[str]) -> list[tuple[int, list[str], str | None]]:
    """(first line number, lines, fence info or None) of each fenced block and each
    run of non-blank lines between blank lines."""
    out: list[tuple[int, list[str], str | None]] = []
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i].strip())
        if fence:
            close = fence[1]
            j = i + 1
            while j < len(lines) and not lines[j].strip().startswith(close):
                j += 1
            out.append((i + 2, lines[i + 1 : j], fence[2].lower()))
            i = j + 1
        elif not lines[i].strip():
            i += 1
        else:
            j = i
            while j < len(lines) and lines[j].strip() and not _FENCE.match(lines[j].strip()):
                j += 1
            out.append((i + 1, lines[i:j], None))
            i = j
    return out


def _block_commands(page: str, start: int, lines: list[str]) -> list[Command]:
    commands: list[Command] = []
    text, first, comments = "", 0, []
    for n, raw in enumerate(lines, start):
        line = raw.rstrip()
        if not text:
            stripped = line.strip()
            if stripped.startswith("# ->") and commands:
                # `# -> 201 {...}` right under a command: what that command answers.
                last = commands[-1]
                more = stripped.lstrip("#").strip()
                comment = f"{last.comment} {more}".strip()
                commands[-1] = Command(page, last.line, "block", last.text, comment)
                continue
            if not stripped or stripped.startswith("#"):
                continue
            first = n
        body, comment = _split_comment(line)
        text = f"{text}\n{body}" if text else body.strip()
        if comment:
            comments.append(comment)
        if _complete(text):
            commands.append(Command(page, first, "block", text.strip(), " ".join(comments)))
            text, comments = "", []
    if text:
        commands.append(Command(page, first, "block", text.strip(), " ".join(comments)))
    return commands


def _complete(text: str) -> bool:
    if text.endswith("\\"):
        return False
    try:
        shlex.split(text)
    except ValueError:  # a quote still open
        return False
    return True


def _split_comment(line: str) -> tuple[str, str]:
    """`cmd  # comment` -> ("cmd", "comment"); a `#` inside quotes is not a comment."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1 :].strip()
    return line, ""


def _inline_commands(page: str, start: int, lines: list[str]) -> list[Command]:
    text = "\n".join(lines)
    commands = []
    for span in _SPAN.finditer(text):
        content = " ".join(span[2].split())
        line = start + text.count("\n", 0, span.start())
        if _REQUEST.fullmatch(content):
            commands.append(Command(page, line, "request", content))
        elif is_command(content):
            commands.append(Command(page, line, "inline", content))
    return commands


def is_command(span: str) -> bool:
    """Whether an inline code span is something a user runs in a shell."""
    try:
        words = shlex.split(span)
    except ValueError:
        return False
    while words and _ASSIGNMENT.fullmatch(words[0]):
        words = words[1:]
    if not words:
        return False
    program = words[0]
    if program.startswith("examples/") and program.endswith((".py", ".sh")):
        return True
    return program in PROGRAMS and len(words) > 1
