"""A simulated worker's samples: every catalogue key, values a MetricSample accepts."""

from __future__ import annotations

import random

from callmeter_events import MetricSample, utcnow
from callmeter_vocabulary.metrics import CATALOGUE
from callmeter_worker.supervisor.simulated import sample_metrics


def test_simulated_samples_are_valid_and_complete() -> None:
    rng = random.Random(7)
    for direction in ("send", "recv"):
        metrics = sample_metrics(direction, 3, "PCMU", rng)
        assert set(metrics) == {m.key for m in CATALOGUE}
        sample = MetricSample(
            run_id="r1",
            endpoint_id="A-1",
            direction=direction,
            seq=3,
            ts=utcnow(),
            metrics=metrics,
        )
        assert sample.metrics["packets"] == 50 and sample.metrics["packets_total"] == 150
        assert sample.metrics["codec"] == "PCMU" and sample.metrics["payload_type"] == 0
