"""The demo's intervals cover the truth about as often as they claim (issue 8).

``memberlab demo`` reports, for 40 shoppers drawn from the population and each of the 9
callouts, whether the true click probability in that shopper's context lies inside the
service's 95% credible interval for that same context (``POST /v1/callouts/rates``).

One run's coverage is a noisy number: its 360 pairs share one posterior (an error in the
bias weight moves every pair at once), and the service draws each decision's seed from
the operating system, so no two runs serve the same items. Runs of the default demo (12
rounds x 200 shoppers) measured 0.950, 0.953, 0.992 and 0.919 on 2026-12-02; sixteen runs
on 2026-12-03 (seeds 0-4 on the code before and after that day's changes, and seeds 0-2
three times) measured a mean of 0.931 with a standard deviation of 0.06, the lowest 0.764,
and the same spread before and after the changes. The check was three runs with a mean of
at least 0.88 and none below 0.80; it failed once in CI on a fair run (0.764, 0.978,
0.886). Now: six runs (a six-run mean has an s.d. of about 0.025), a mean of at least
0.86 (about 3 s.d. below 0.93) and at most 1.0, and no run below 0.70.
"""

from __future__ import annotations

import numpy as np
import pytest

from memberlab.service import demo


@pytest.mark.slow
@pytest.mark.timeout(1500)  # about 1.5 minutes idle; 5 on a loaded 2-core machine
def test_demo_intervals_cover_the_truth_about_nominally() -> None:
    runs = [demo.run(rounds=12, shoppers=200, seed=s) for s in range(6)]
    cover = [r.coverage for r in runs]
    assert all(r.level == 0.95 and r.n_coverage_contexts == 40 for r in runs)
    assert np.mean(cover) >= 0.86 and max(cover) <= 1.0, cover
    assert min(cover) >= 0.70, cover
    # and it is learning, not only covering with wide intervals
    assert all(r.rounds[-1].ctr > r.rounds[0].ctr for r in runs), [
        (r.rounds[0].ctr, r.rounds[-1].ctr) for r in runs
    ]
