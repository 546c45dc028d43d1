"""Deep PQR (Geng et al., ICML 2020): :class:`~memberlab.choice.PQR` with neural learners.

One mechanism: the P, Q and R steps are those of :class:`~memberlab.choice.PQR`; this
module only chooses the learners (scikit-learn multilayer perceptrons on standardised
states, each stopping early on a held-out share of its rows, i.e. of the observed
decisions and transitions: the policy on the held-out log-loss, the Q and reward
networks on the held-out R^2) and the fitted-Q settings that suit them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from memberlab._rng import RNGLike, as_generator
from memberlab.choice._pqr import PQR

__all__ = ["HeldOutMLPClassifier", "deep_pqr"]


class HeldOutMLPClassifier(ClassifierMixin, BaseEstimator):
    """An MLP classifier that stops early on the held-out log-loss.

    scikit-learn's ``MLPClassifier(early_stopping=True)`` monitors held-out *accuracy*,
    which stops as soon as the most likely class is right and leaves the probabilities
    (what PQR needs) poorly fitted. This trains by epochs (``partial_fit``) and keeps the
    weights with the best held-out log-loss.

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default (64, 64)
    alpha : float, default 1e-4
    learning_rate_init : float, default 1e-3
    max_iter : int, default 200
        Epochs at most.
    validation_fraction : float, default 0.2
    n_iter_no_change : int, default 10
    batch_size : int, default 200
    random_state : int or None
    """

    def __init__(
        self,
        *,
        hidden_layer_sizes: tuple[int, ...] = (64, 64),
        alpha: float = 1e-4,
        learning_rate_init: float = 1e-3,
        max_iter: int = 200,
        validation_fraction: float = 0.2,
        n_iter_no_change: int = 10,
        batch_size: int = 200,
        random_state: int | None = None,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.alpha = alpha
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.batch_size = batch_size
        self.random_state = random_state

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> HeldOutMLPClassifier:
        """Fit on ``(X, y)``; ``validation_fraction`` of the rows are held out."""
        from sklearn.neural_network import MLPClassifier

        if not 0.0 < self.validation_fraction < 1.0:
            raise ValueError(
                f"validation_fraction == {self.validation_fraction}, must be in (0, 1)."
            )
        x = np.asarray(X, dtype=float)
        yy = np.asarray(y)
        w = np.ones(len(yy)) if sample_weight is None else np.asarray(sample_weight, float)
        g = np.random.default_rng(self.random_state)
        held = g.random(len(yy)) < self.validation_fraction
        if held.all() or not held.any():
            held = np.zeros(len(yy), dtype=bool)
        tr = ~held if held.any() else np.ones(len(yy), dtype=bool)
        self.classes_ = np.unique(yy)
        net = MLPClassifier(
            hidden_layer_sizes=self.hidden_layer_sizes,
            alpha=self.alpha,
            learning_rate_init=self.learning_rate_init,
            batch_size=min(self.batch_size, int(tr.sum())),
            random_state=self.random_state,
        )
        best = np.inf
        best_state: tuple[list[Any], list[Any]] | None = None
        stale = 0
        self.n_iter_ = 0
        for epoch in range(1, self.max_iter + 1):
            net.partial_fit(x[tr], yy[tr], sample_weight=w[tr], classes=self.classes_)
            self.n_iter_ = epoch
            if not held.any():
                continue
            proba = np.clip(net.predict_proba(x[held]), 1e-12, 1.0)
            col = np.searchsorted(self.classes_, yy[held])
            loss = float(-np.average(np.log(proba[np.arange(held.sum()), col]), weights=w[held]))
            if loss < best - 1e-6:
                best, stale = loss, 0
                best_state = ([c.copy() for c in net.coefs_], [b.copy() for b in net.intercepts_])
            else:
                stale += 1
                if stale >= self.n_iter_no_change:
                    break
        if best_state is not None:
            net.coefs_, net.intercepts_ = best_state
        self.best_validation_loss_ = best
        self.net_ = net
        return self

    def predict_proba(self, X: Any) -> Any:
        """Class probabilities, shape (n, n_classes)."""
        return self.net_.predict_proba(np.asarray(X, dtype=float))

    def predict(self, X: Any) -> Any:
        """Most likely class."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


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
    backend: str = "sklearn",
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
        Share of each fit's rows held out for early stopping (the policy network:
        :class:`HeldOutMLPClassifier`, on the held-out log-loss; the Q and reward
        networks: ``MLPRegressor(early_stopping=True)``, on the held-out R^2).
    patience : int, default 10
        Epochs without improvement of the held-out score before stopping.
    n_q_iter : int, default 40
        Fitted-Q iterations (each warm-starts from the previous network).
    q_tol : float, default 1e-3
        Relative change in the anchor's Q that ends the iteration.
    clip : float, default 1e-3
        Policy probabilities clipped below.
    backend : {"sklearn", "torch"}, default "sklearn"
        ``"sklearn"``: scikit-learn MLPs as above. ``"torch"``: PyTorch MLPs
        (:class:`~memberlab.choice.TorchMLPClassifier` and
        :class:`~memberlab.choice.TorchMLPRegressor`) of the same shape, penalty, step
        size and epochs, every network stopping on its held-out loss (log-loss for the
        policy, mean squared error for Q and the reward) with ``patience``; needs
        ``pip install "memberlab[torch]"`` (:class:`MissingDependencyError` otherwise).
    rng : int, Generator or None
        Seeds the three networks (child seeds via ``SeedSequence.spawn``).
    **pqr_params
        Any other :class:`~memberlab.choice.PQR` parameter.

    Returns
    -------
    PQR
        Unfitted; ``fit(panel)`` returns results with ``estimator="pqr-fa"``.
    """
    from sklearn.neural_network import MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if backend not in ("sklearn", "torch"):
        raise ValueError(f"backend == {backend!r}, must be 'sklearn' or 'torch'.")
    g = as_generator(rng)
    seeds = [
        int(s.generate_state(1)[0])
        for s in np.random.SeedSequence(int(g.integers(2**31 - 1))).spawn(3)
    ]
    # the same shape, penalty, step size, epochs and held-out stopping for every network
    shared: dict[str, Any] = dict(
        hidden_layer_sizes=hidden,
        alpha=alpha,
        learning_rate_init=learning_rate,
        max_iter=max_epochs,
        validation_fraction=validation_fraction,
        n_iter_no_change=patience,
    )
    classifier: Any
    regressor: Any
    if backend == "torch":
        from memberlab.choice._torch import TorchMLPClassifier, TorchMLPRegressor, import_torch

        import_torch()  # fail here, with the install hint, rather than inside fit
        classifier, regressor = TorchMLPClassifier, TorchMLPRegressor
        reg_params = shared
    else:
        classifier, regressor = HeldOutMLPClassifier, MLPRegressor
        reg_params = {**shared, "early_stopping": True}
    policy = make_pipeline(StandardScaler(), classifier(random_state=seeds[0], **shared))
    q = make_pipeline(
        StandardScaler(), regressor(random_state=seeds[1], warm_start=True, **reg_params)
    )
    reward = make_pipeline(StandardScaler(), regressor(random_state=seeds[2], **reg_params))
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
