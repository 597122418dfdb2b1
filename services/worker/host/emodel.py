"""ITU-T G.107 E-model, simplified form (METRICS.md), pure Python.

R = 93.2 - Id - Ie_eff, with Is and A taken as the G.107 defaults (folded
into 93.2). Ie/Bpl per codec come from ITU-T G.113 Appendix I where that
table has the codec; the other rows are documented approximations.
"""

from __future__ import annotations

from typing import NamedTuple

R0 = 93.2  # G.107 default Ro - Is with all other parameters at their defaults


class CodecImpairment(NamedTuple):
    ie: float  # equipment impairment at zero loss
    bpl: float  # packet-loss robustness factor
    note: str


# Keys are upper-cased codec names as PJSIP reports them (StreamInfo.codecName).
CODEC_TABLE: dict[str, CodecImpairment] = {
    # G.113 Appendix I, Table I.3: G.711 with packet-loss concealment (PJSIP's PLC is on).
    "PCMU": CodecImpairment(0.0, 25.1, "G.113 App. I: G.711 with PLC"),
    "PCMA": CodecImpairment(0.0, 25.1, "G.113 App. I: G.711 with PLC"),
    # G.722 is wideband; G.113's narrowband table has no row for it and the wideband
    # Ie,wb values (G.113 Amd. 1) live on the 129-point scale of G.107.1. On the
    # narrowband scale used here we treat it like G.711 with PLC, so MOS does not
    # reward the wider band: a conservative approximation.
    "G722": CodecImpairment(0.0, 25.1, "approximation: as G.711 with PLC"),
    # GSM 06.10 full rate: Ie = 20 is G.113 Table I.1. Bpl is not tabulated for
    # GSM-FR; 10 is an approximation between the no-PLC G.711 (4.3) and G.729A (19).
    "GSM": CodecImpairment(20.0, 10.0, "G.113 Table I.1 Ie; Bpl approximated"),
    # iLBC is not in G.113; Ie 11 / Bpl 32 are the figures commonly cited for iLBC
    # at 15.2 kbit/s; PJSIP defaults to the 30 ms (13.33 kbit/s) mode: approximation.
    "ILBC": CodecImpairment(11.0, 32.0, "literature values, not in G.113"),
    # Speex narrowband (~15 kbit/s in PJSIP) is not in G.113: approximated by the
    # G.729A figures (Ie 11, Bpl 19), a codec of similar bitrate and design.
    "SPEEX": CodecImpairment(11.0, 19.0, "approximation: as G.729A"),
    # Linear PCM: no coding impairment; PJSIP's generic PLC applies as for G.711.
    "L16": CodecImpairment(0.0, 25.1, "approximation: as G.711 with PLC"),
}
DEFAULT_CODEC = "PCMU"


class EModelResult(NamedTuple):
    r: float
    mos: float
    id: float
    ie_eff: float


def codec_impairment(codec: str | None) -> CodecImpairment:
    """Table row for a codec name or id ("PCMU", "PCMU/8000/1", "speex"); G.711 if unknown."""
    name = (codec or DEFAULT_CODEC).split("/")[0].upper()
    return CODEC_TABLE.get(name, CODEC_TABLE[DEFAULT_CODEC])


def delay_impairment(one_way_delay_ms: float) -> float:
    """Id = 0.024*Ta + 0.11*(Ta - 177.3)*H(Ta - 177.3)."""
    ta = max(0.0, float(one_way_delay_ms))
    extra = 0.11 * (ta - 177.3) if ta > 177.3 else 0.0
    return 0.024 * ta + extra


def effective_ie(codec: str | None, loss_pct: float, burst_r: float = 1.0) -> float:
    """Ie_eff = Ie + (95 - Ie) * Ppl / (Ppl / BurstR + Bpl)."""
    row = codec_impairment(codec)
    ppl = min(100.0, max(0.0, float(loss_pct)))
    burst = max(1.0, float(burst_r))  # BurstR < 1 is not defined for these tables
    return row.ie + (95.0 - row.ie) * ppl / (ppl / burst + row.bpl)


def r_factor(
    codec: str | None, loss_pct: float, one_way_delay_ms: float, burst_r: float = 1.0
) -> float:
    """Transmission rating R (not clamped; mos_from_r clamps)."""
    return R0 - delay_impairment(one_way_delay_ms) - effective_ie(codec, loss_pct, burst_r)


def mos_from_r(r: float) -> float:
    """G.107 Annex B mapping: 1 below R=0, 4.5 above R=100."""
    if r < 0:
        return 1.0
    if r > 100:
        return 4.5
    return 1.0 + 0.035 * r + 7e-6 * r * (r - 60.0) * (100.0 - r)


def evaluate(
    codec: str | None, loss_pct: float, one_way_delay_ms: float, burst_r: float = 1.0
) -> EModelResult:
    """R, MOS and the two impairments in one call."""
    id_ = delay_impairment(one_way_delay_ms)
    ie = effective_ie(codec, loss_pct, burst_r)
    r = R0 - id_ - ie
    return EModelResult(r=r, mos=mos_from_r(r), id=id_, ie_eff=ie)
