"""Deep PQR (Geng et al., ICML 2020): :class:`~memberlab.choice.PQR` with neural learners.

One mechanism: the P, Q and R steps are those of :class:`~memberlab.choice.PQR`; this
module only chooses the learners (scikit-learn multilayer perceptrons on standardised
states, each stopping early on a held-out share of its rows, i.e. of the observed
transitions) and the fitted-Q settings that suit them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from memberlab._rng import RNGLike, as_generator
from memberlab.choice._pqr import PQR

__all__ = ["deep_pqr"]


def deep_pqr(
    *,
    anchor: Any,
    discount: float,
    anchor_reward: float = 0.0,
    hidden: tuple[int, ...] = (64, 64),
    alpha: float = 1e-4,
    learning_rate: float = 1e-3,
    max_epochs: int = 200,
    validation_fraction: float = 0.2,
    patience: int = 10,
    n_q_iter: int = 40,
    q_tol: float = 1e-3,
    clip: float = 1e-3,
    rng: RNGLike = None,
    **pqr_params: Any,
) -> PQR:
    """PQR with MLP learners for the policy, the anchor's Q and the reward.

    Parameters
    ----------
    anchor, discount, anchor_reward
        As :class:`~memberlab.choice.PQR`.
    hidden : tuple of int, default (64, 64)
        Hidden layer sizes (ReLU) of every network.
    alpha : float, default 1e-4
        L2 penalty.
    learning_rate : float, default 1e-3
        Adam's step size.
    max_epochs : int, default 200
        Epochs per fit at most.
    validation_fraction : float, default 0.2
        Share of each fit's rows held out for early stopping.
    patience : int, default 10
        Epochs without improvement of the held-out score before stopping.
    n_q_iter : int, default 40
        Fitted-Q iterations (each warm-starts from the previous network).
    q_tol : float, default 1e-3
        Relative change in the anchor's Q that ends the iteration.
    clip : float, default 1e-3
        Policy probabilities clipped below.
    rng : int, Generator or None
        Seeds the three networks (child seeds via ``SeedSequence.spawn``).
    **pqr_params
        Any other :class:`~memberlab.choice.PQR` parameter.

    Returns
    -------
    PQR
        Unfitted; ``fit(panel)`` returns results with ``estimator="pqr-fa"``.
    """
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    g = as_generator(rng)
    seeds = [
        int(s.generate_state(1)[0])
        for s in np.random.SeedSequence(int(g.integers(2**31 - 1))).spawn(3)
    ]
    common = dict(
        hidden_layer_sizes=hidden,
        alpha=alpha,
        learning_rate_init=learning_rate,
        max_iter=max_epochs,
        early_stopping=True,
        validation_fraction=validation_fraction,
        n_iter_no_change=patience,
    )
    policy = make_pipeline(StandardScaler(), MLPClassifier(random_state=seeds[0], **common))
    q = make_pipeline(
        StandardScaler(), MLPRegressor(random_state=seeds[1], warm_start=True, **common)
    )
    reward = make_pipeline(StandardScaler(), MLPRegressor(random_state=seeds[2], **common))
    return PQR(
        anchor=anchor,
        discount=discount,
        anchor_reward=anchor_reward,
        policy_learner=policy,
        q_learner=q,
        reward_learner=reward,
        clip=clip,
        n_q_iter=n_q_iter,
        q_tol=q_tol,
        **pqr_params,
    )
