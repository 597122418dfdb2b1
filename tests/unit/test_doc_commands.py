"""Finding the commands a Markdown page shows (tests/support/doc_commands.py)."""

from __future__ import annotations

from tests.support.doc_commands import Command, is_command, parse, unused_markers

PAGE = """# Title

Run `make run`, then `callmeter runs list`; the `callmeter` command and
`libs/cli/main.py` are names, `OTEL_X=console` a setting. `GET /api/v1/runs/<id>`
answers; `examples/follow.py` is a script.

```bash
make run    # starts it
curl -XPOST localhost:8000/x -d '{
  "a": "# not a comment"}'
# -> 201 {"id": "<test>"}
# a heading for the next command, not about the one above
FOO=1 make lint \\
  --quiet
```

```python
print("not a shell block")
```

<!-- not-run: needs a cluster -->
```sh
kubectl apply -f infra/k8s/
```

<!-- not-run `make test`: the suite itself -->
Say `make test` or `make bench`.
"""


def commands() -> list[Command]:
    return parse("P.md", PAGE)[0]


def test_inline_spans_that_run_something_are_commands():
    inline = [(c.kind, c.text, c.line) for c in commands() if c.kind != "block"]
    assert inline[:4] == [
        ("inline", "make run", 3),
        ("inline", "callmeter runs list", 3),
        ("request", "GET /api/v1/runs/<id>", 4),
        ("inline", "examples/follow.py", 5),
    ]
    assert is_command("CALLMETER_API_KEYS=k make run") and is_command("python bench/ui.py")
    assert not is_command("callmeter") and not is_command("OTEL_X=console")
    assert not is_command("libs/cli/main.py") and not is_command("mos_avg >= 4.0")


def test_a_block_command_runs_on_while_a_quote_is_open_and_keeps_its_promise():
    block = [c for c in commands() if c.kind == "block" and c.not_run is None]
    assert [(c.line, c.text, c.comment) for c in block] == [
        (8, "make run", "starts it"),
        (
            9,
            'curl -XPOST localhost:8000/x -d \'{\n  "a": "# not a comment"}\'',
            '-> 201 {"id": "<test>"}',
        ),
        (13, "FOO=1 make lint \\\n  --quiet", ""),
    ]


def test_markers_mark_the_next_block_or_only_the_commands_they_name():
    marked = {c.text: c.not_run for c in commands() if c.not_run}
    assert marked == {
        "kubectl apply -f infra/k8s/": "needs a cluster [P.md:21]",
        "make test": "the suite itself [P.md:26]",
    }
    assert next(c for c in commands() if c.text == "make bench").not_run is None
    assert "print" not in " ".join(c.text for c in commands())  # a python block is not shell


def test_a_marker_that_marks_nothing_is_reported():
    found, markers = parse("P.md", PAGE.replace("Say `make test` or", "Say"))
    assert [m.line for m in unused_markers(found, markers)] == [26]
    assert unused_markers(*parse("P.md", PAGE)) == []
