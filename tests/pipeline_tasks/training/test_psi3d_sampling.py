"""Stage 2a's view sampling: reconstruction targets (``psi3d.source_view_target_p``) and unchanged runs without them."""

from __future__ import annotations

import numpy as np

from pipeline_tasks.data.genhead_views import draw_views


def test_without_reconstruction_targets_the_draws_are_unchanged_and_never_the_source():
    a = draw_views(np.random.default_rng(5), 300, 4, 1)
    b = draw_views(np.random.default_rng(5), 300, 4, 1, source_target_p=0.0)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert (a[1] != a[0]).all()


def test_reconstruction_targets_appear_at_their_rate_and_only_in_the_first_column():
    p, q = draw_views(np.random.default_rng(0), 4000, 4, 1, source_target_p=0.25)
    assert 0.22 < (q == p).mean() < 0.28
    p, q = draw_views(np.random.default_rng(0), 4000, 4, 2, source_target_p=1.0)
    assert (q[:, 0] == p).all() and (q[:, 1] != p).all()
    # the other views are still drawn as before: a row's source and its second target come from the same stream
    p0, q0 = draw_views(np.random.default_rng(0), 4000, 4, 2)
    assert np.array_equal(p, p0) and np.array_equal(q[:, 1], q0[:, 1])
