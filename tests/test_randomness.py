"""Where randomness comes from: one generator per (seed, epoch, index), one shuffle per (seed,
epoch). Independent streams, and the same numbers in every release, so that seeds reproduce."""
import itertools

import numpy as np

from nsa_fast.pipelines import epoch_batches
from nsa_fast.sampler import sample_rng


def test_sample_streams_are_distinct_over_a_grid_of_keys():
    # (s, e + 1, i) and (s, e, i + 1) are neighbours a sum of the key would merge
    keys = list(itertools.product(range(3), range(4), range(6)))
    draws = {k: tuple(sample_rng(*k).random(4)) for k in keys}
    assert len(set(draws.values())) == len(keys)
    for s, e, i in [(0, 1, 0), (1, 3, 4)]:
        assert draws[(s, e, i)] != draws[(s, e - 1, i + 1)] and draws[(s, e, i)] != draws[(s + 1, e - 1, i)]
    assert tuple(sample_rng(1, 2, 3).random(4)) == draws[(1, 2, 3)]  # and each is reproducible


def test_streams_are_not_correlated():
    # neighbouring keys give draws that look independent (correlation within sampling noise)
    a = np.array([sample_rng(0, 0, i).random() for i in range(2000)])
    b = np.array([sample_rng(0, 1, i).random() for i in range(2000)])
    c = np.array([sample_rng(0, 0, i + 1).random() for i in range(2000)])
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.1 and abs(np.corrcoef(b, c)[0, 1]) < 0.1


def test_the_published_randomness_does_not_change():
    # A seed names a run: these numbers were drawn by nsa_fast 0.1 and must be drawn again by every
    # release (a changed shuffle constant or seeding scheme would silently change every run). To
    # change them on purpose, regenerate with the calls below and say so in the release notes.
    assert np.concatenate(epoch_batches(10, 4, seed=0, epoch=0)).tolist() == [9, 2, 1, 6, 0, 8, 5, 3, 7, 4]
    assert np.concatenate(epoch_batches(7, 3, seed=3, epoch=7)).tolist() == [3, 5, 6, 0, 4, 2]
    assert sample_rng(0, 0, 0).random(3).tolist() == [0.6369616873214543, 0.2697867137638703, 0.04097352393619469]
