"""Generates docs/metrics.md from the catalogue, so the reference page cannot drift."""

from __future__ import annotations

from callmeter_vocabulary.metrics import CATALOGUE, NULL_IN_PJSIP

HEADER = """# Metric reference

Every endpoint reports one sample per second for each direction (`send`, `recv`);
each sample carries every key below (so {total} values per endpoint per second).
A key PJSIP cannot measure in a direction is `null`, never an estimate.
Generated from `libs/vocabulary/metrics.py` by
`python -m callmeter_events.docs > docs/metrics.md`.

MOS and R-factor follow the ITU-T G.107 E-model (simplified form, see
`services/worker/host/emodel.py`): R = 93.2 − Id − Ie_eff, with codec Ie/Bpl from
ITU-T G.113 Appendix I. The receive direction uses local loss, RTT/2 plus
jitter-buffer delay plus packetisation; the send direction uses the loss and
RTT the far end reports in RTCP (null until its first report).

Run results are per direction. Each stream is measured where it is received (the
`recv` samples: local counts, exact); every endpoint takes part in one call, so a
run has two directions, named as the calling side sees them: `send` (caller →
callee, the called groups' `recv` samples) and `recv` (callee → caller, the calling
groups' `recv` samples). Each headline figure (summary, thresholds without a
suffix) is the worse direction's, never an average of the two. Loss is packets lost
over packets expected (lost + received); percentiles come from histogram bins,
interpolated and kept within the observed minimum and maximum.

| key | unit | category | type | source / how it is computed |
|---|---|---|---|---|
"""


def render() -> str:
    rows = [f"| `{m.key}` | {m.unit} | {m.category} | {m.kind} | {m.source} |" for m in CATALOGUE]
    always_null = sum(1 for m in CATALOGUE if m.source.startswith(NULL_IN_PJSIP))
    footer = (
        f"\n{len(CATALOGUE)} keys per direction; {always_null} of them are always null "
        "with this pjsua2 build (kept so the schema is stable when a build exposes them).\n"
    )
    return HEADER.format(total=2 * len(CATALOGUE)) + "\n".join(rows) + "\n" + footer


if __name__ == "__main__":
    print(render(), end="")
