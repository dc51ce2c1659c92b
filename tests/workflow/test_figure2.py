"""The Figure 2 plot's view of d > 2 samples: the exact target's leading principal plane."""

import numpy as np

from workflow.scripts.figure2 import _plane


def test_plane_is_the_leading_principal_plane():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 10)) * 0.1
    x[:, 7] += 3.0 * rng.choice([-1.0, 1.0], size=4000)  # most spread: coordinate 7
    x[:, 2] += 1.5 * rng.normal(size=4000)  # then coordinate 2
    p = _plane(x)
    assert p.shape == (10, 2)
    np.testing.assert_allclose(p.T @ p, np.eye(2), atol=1e-12)
    # the columns are +e7 and +e2 (signs fixed: the largest entry positive)
    np.testing.assert_allclose(np.abs(p[[7, 2], [0, 1]]), 1.0, atol=1e-3)
    assert p[7, 0] > 0 and p[2, 1] > 0


def test_plane_is_the_identity_up_to_two_dimensions():
    np.testing.assert_array_equal(_plane(np.zeros((5, 2))), np.eye(2))
    np.testing.assert_array_equal(_plane(np.zeros((5, 1))), np.eye(1))


def test_a_regenerated_figure_is_the_same_file(tmp_path):
    # PDFs carry no creation date: the pipeline's committed figures change only with their data
    import time

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from amcli.run import atomic_savefig

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    paths = [tmp_path / "a.pdf", tmp_path / "b.pdf"]
    atomic_savefig(fig, paths[0])
    time.sleep(1.1)  # a creation date would differ by a second
    atomic_savefig(fig, paths[1])
    plt.close(fig)
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert sorted(q.name for q in tmp_path.iterdir()) == ["a.pdf", "b.pdf"]  # no temporaries
