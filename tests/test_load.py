"""Many clients at once on loopback (bounded): every job completes or is refused as busy."""

from __future__ import annotations

import concurrent.futures as cf

import pytest

CLIENTS = 20


@pytest.mark.slow
def test_twenty_concurrent_clients(studio_server):
    from gradio_client import Client

    url, ctx = studio_server

    def one(i: int):
        client = Client(url, analytics_enabled=False, verbose=False)
        lr = round(0.001 * (i + 1), 4)
        try:
            status, _, _ = client.predict("wine", "mlp", None, "label", 1, lr,
                                          api_name="/train_baseline")
        except Exception as exc:  # the queue may be full: that must be said plainly
            return i, client.session_hash, lr, f"refused: {exc}"
        return i, client.session_hash, lr, status

    with cf.ThreadPoolExecutor(CLIENTS) as pool:
        outcomes = list(pool.map(one, range(CLIENTS), timeout=600))
    done = [o for o in outcomes if o[3].startswith("**Trained**")]
    refused = [o for o in outcomes if o[3].startswith("refused")]
    assert len(done) + len(refused) == CLIENTS, outcomes
    assert len(done) >= ctx.queue_size // 2
    for r in refused:
        assert "queue" in r[3].lower() or "busy" in r[3].lower(), r
    for _, session, lr, _ in done:  # each client sees exactly its own job, nobody else's
        reports = [rep for _, rep in ctx.reports(session)]
        assert len(reports) == 1 and reports[0]["config"]["lr"] == lr
