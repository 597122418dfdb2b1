"""A call refused because its host's call table is full is told apart from other
makeCall failures by PJSIP's own message for the status (not a copy of it)."""

from __future__ import annotations

import pjsua2 as pj

from callmeter_worker.host.endpoint import call_slots_full

PJ_ETOOMANY, PJ_EINVAL = 70010, 70004  # PJ_ERRNO_START_STATUS + 10, + 4


def test_a_full_call_table_is_recognised_by_pjsips_own_words() -> None:
    words = pj.Endpoint().utilStrError  # pjlib's strerror: no library start needed
    assert call_slots_full(f"pjsua_call_make_call(...) error: {words(PJ_ETOOMANY)}")
    assert call_slots_full("... [status=70010]")
    assert not call_slots_full(f"pjsua_call_make_call(...) error: {words(PJ_EINVAL)}")
