"""The run page's SQL listing and counts say what the in-memory ones say.

Live and finished runs list their endpoints in SQL (services/api/queries.py: one
page read, whatever the run's size); replay folds events in memory and lists with
endpoint_views.select_endpoints. Both must filter, sort and count alike: here every
filter, sort key and order is asked of both over the same endpoints in PostgreSQL.
"""

from __future__ import annotations

import itertools
import json
import random
from collections import Counter
from collections.abc import Iterator

import psycopg
import pytest

from callmeter_api import queries
from callmeter_api.endpoint_views import SORT_KEYS, ListQuery, group_means, select_endpoints
from callmeter_api.views import counts_of, endpoint_view
from callmeter_common.servers import Server
from callmeter_events import OUTCOMES, PHASES
from callmeter_storage.migrations import migrate
from tests.support.databases import create_database, drop_database

pytestmark = pytest.mark.integration
RUN = "run-listing"


def _docs(rng: random.Random) -> list[dict[str, object]]:
    docs = []
    for group, size, role in (("A", 14, "caller"), ("B", 11, "receiver"), ("C", 3, "idle")):
        for i in range(1, size + 1):
            done = rng.random() < 0.5
            docs.append(
                {
                    "run_id": RUN,
                    "endpoint_id": f"{group}-{i}",
                    "group": group,
                    "role": role,
                    "phase": rng.choice([None, *PHASES]),
                    "outcome": rng.choice(OUTCOMES) if done else None,
                    "reason": rng.choice(["", "busy here", "486 Busy", "timeout_50%"]),
                    "sip_code": rng.choice([None, 200, 486, 503]),
                    "worker_id": rng.choice([None, "w-1", "w-2"]),
                    "codec": rng.choice([None, "PCMU", "PCMA"]),
                    "call_setup_ms": rng.choice([None, 20.0, 35.5, 20.0]),
                }
            )
    return docs


@pytest.fixture
def listed(postgres_server: Server) -> Iterator[tuple[str, list[dict[str, object]], dict]]:
    url = create_database(postgres_server.url)
    try:
        migrate(url)
        rng = random.Random(7)
        docs = _docs(rng)
        mos = {d["endpoint_id"]: round(rng.uniform(1, 4.5), 2) for d in docs if rng.random() < 0.6}
        with psycopg.connect(url, autocommit=True) as conn:
            for d in docs:
                conn.execute(
                    "INSERT INTO endpoints (run_id, endpoint_id, group_name, phase, outcome,"
                    " sip_code, doc) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    (RUN, d["endpoint_id"], d["group"], d["phase"], d["outcome"], d["sip_code"])
                    + (json.dumps(d),),
                )
            for ep, value in mos.items():  # as if folded from two samples: total / n
                conn.execute(
                    "INSERT INTO rollup_endpoint_folded (run_id, endpoint_id, metric, group_name,"
                    " n, total, lo, hi) VALUES (%s, %s, 'mos', %s, 2, %s, %s, %s)",
                    (RUN, ep, str(ep).split("-")[0], 2 * value, value, value),
                )
        yield url, docs, mos
    finally:
        drop_database(url)


QUERIES = [
    ListQuery(sort=sort, order=order, phase=phase, outcome=outcome, group=group, q=q)
    for sort, order in itertools.product(SORT_KEYS, ("asc", "desc"))
    for phase, outcome, group, q in (
        ("", "", "", ""),
        ("INCALL", "", "", ""),
        ("", "failed", "", ""),
        ("", "SUCCESS", "A", ""),
        ("", "", "B", "busy"),
        ("", "", "", "50%"),  # a LIKE wildcard, taken literally
        ("", "", "", "w-2"),
    )
]


def test_sql_listing_and_counts_match_the_in_memory_ones(listed) -> None:  # type: ignore[no-untyped-def]
    url, docs, mos = listed
    views = [endpoint_view(d) for d in docs]
    with psycopg.connect(url) as conn:
        for query in QUERIES:
            expected = [e["id"] for e in select_endpoints(views, mos, query)]
            rows, total = queries.endpoint_listing(conn, RUN, query, 0, 1000)
            assert [r["endpoint_id"] for r in rows] == expected, query
            assert total == len(expected), query
            assert {r["endpoint_id"]: r["mos"] for r in rows} == {
                e: pytest.approx(mos[e]) if e in mos else None for e in expected
            }
        page = queries.listing_page(conn, RUN, ListQuery(per_page=10, page=99))
        assert (page.page, page.pages, page.total, len(page.docs)) == (3, 3, 28, 8)
        assert Counter(queries.endpoint_counts(conn, RUN)) == Counter(counts_of(docs))
        assert queries.group_mos(conn, RUN) == pytest.approx(group_means(views, mos))
        assert queries.sip_code_counts(conn, RUN) == Counter(d["sip_code"] for d in docs)
