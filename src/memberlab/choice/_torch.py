"""PyTorch multilayer perceptrons for Deep PQR (``deep_pqr(backend="torch")``).

Two scikit-learn-compatible learners, :class:`TorchMLPClassifier` and
:class:`TorchMLPRegressor`, with the interface :class:`~memberlab.choice.PQR` uses
(``fit(X, y, sample_weight=None)``, ``predict``, ``predict_proba``, ``clone``-able
parameters). Each trains with Adam on mini-batches and stops early on a held-out share
of its rows, keeping the weights with the best held-out loss (the weighted log-loss for
the classifier, the weighted mean squared error for the regressor), as
:class:`~memberlab.choice._deep.HeldOutMLPClassifier` does. torch is imported lazily:
it is an optional dependency (``pip install "memberlab[torch]"``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

from memberlab._errors import MissingDependencyError

__all__ = ["TorchMLPClassifier", "TorchMLPRegressor", "import_torch"]


def import_torch() -> Any:
    """Import torch, or raise :class:`MissingDependencyError` saying how to install it."""
    try:
        import torch
    except ImportError as exc:
        raise MissingDependencyError(
            f"the PyTorch backend of Deep PQR needs torch ({exc}); install it with: "
            'pip install "memberlab[torch]"'
        ) from None
    return torch


class _TorchMLP(BaseEstimator):
    """Shared training loop; subclasses set the output layer and the loss."""

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
        warm_start: bool = False,
        n_threads: int | None = 1,
        random_state: int | None = None,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.alpha = alpha
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.batch_size = batch_size
        self.warm_start = warm_start
        self.n_threads = n_threads
        self.random_state = random_state

    def _validate(self) -> None:
        if not 0.0 < self.validation_fraction < 1.0:
            raise ValueError(
                f"validation_fraction == {self.validation_fraction}, must be in (0, 1)."
            )
        for name in ("max_iter", "n_iter_no_change", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} == {getattr(self, name)}, must be >= 1.")
        if self.alpha < 0 or self.learning_rate_init <= 0:
            raise ValueError(
                f"alpha == {self.alpha} and learning_rate_init == {self.learning_rate_init}; "
                "alpha must be >= 0 and learning_rate_init > 0."
            )
        if self.n_threads is not None and self.n_threads < 1:
            raise ValueError(f"n_threads == {self.n_threads}, must be >= 1 or None.")

    def _build(self, torch: Any, n_in: int, n_out: int) -> Any:
        layers: list[Any] = []
        width = n_in
        for h in self.hidden_layer_sizes:
            layers += [torch.nn.Linear(width, int(h)), torch.nn.ReLU()]
            width = int(h)
        layers.append(torch.nn.Linear(width, n_out))
        return torch.nn.Sequential(*layers).double()

    def _loss(self, torch: Any, out: Any, target: Any, w: Any) -> Any:
        raise NotImplementedError

    def _train(self, x: np.ndarray, target: np.ndarray, w: np.ndarray, n_out: int) -> None:
        torch = import_torch()
        self._validate()
        g = np.random.default_rng(self.random_state)
        n = len(x)
        held = g.random(n) < self.validation_fraction
        if held.all() or not held.any():
            held = np.zeros(n, dtype=bool)
        tr = np.flatnonzero(~held) if held.any() else np.arange(n)
        seed = int(g.integers(2**31 - 1))
        prev_threads = torch.get_num_threads()
        if self.n_threads is not None:
            torch.set_num_threads(int(self.n_threads))
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                if not (self.warm_start and hasattr(self, "net_")):
                    self.net_ = self._build(torch, x.shape[1], n_out)
                net = self.net_
                opt = torch.optim.Adam(
                    net.parameters(), lr=self.learning_rate_init, weight_decay=0.0
                )
                xt = torch.from_numpy(np.ascontiguousarray(x, dtype=float))
                yt = torch.from_numpy(np.ascontiguousarray(target))
                wt = torch.from_numpy(np.ascontiguousarray(w, dtype=float))
                hx, hy, hw = xt[held], yt[held], wt[held]
                tr_t = torch.from_numpy(tr)
                batch = min(int(self.batch_size), len(tr))
                # sklearn's convention: alpha/2 * ||W||^2 per sample of the batch
                scale = self.alpha / 2.0
                best = np.inf
                best_state = None
                stale = 0
                self.n_iter_ = 0
                for epoch in range(1, int(self.max_iter) + 1):
                    net.train()
                    perm = tr_t[torch.randperm(len(tr))]
                    for start in range(0, len(perm), batch):
                        idx = perm[start : start + batch]
                        opt.zero_grad()
                        loss = self._loss(torch, net(xt[idx]), yt[idx], wt[idx])
                        if scale > 0:
                            penalty = sum(
                                (p**2).sum() for n_, p in net.named_parameters() if "weight" in n_
                            )
                            loss = loss + scale * penalty / len(idx)
                        loss.backward()
                        opt.step()
                    self.n_iter_ = epoch
                    if not held.any():
                        continue
                    net.eval()
                    with torch.no_grad():
                        val = float(self._loss(torch, net(hx), hy, hw))
                    if val < best - 1e-6 * max(1.0, abs(val)):
                        best, stale = val, 0
                        best_state = {k: v.clone() for k, v in net.state_dict().items()}
                    else:
                        stale += 1
                        if stale >= self.n_iter_no_change:
                            break
                if best_state is not None:
                    net.load_state_dict(best_state)
                net.eval()
        finally:
            torch.set_num_threads(prev_threads)
        self.best_validation_loss_ = best

    def _forward(self, X: Any) -> np.ndarray:
        torch = import_torch()
        with torch.no_grad():
            out = self.net_(torch.from_numpy(np.ascontiguousarray(X, dtype=float)))
        return np.asarray(out.numpy(), dtype=float)


class TorchMLPClassifier(ClassifierMixin, _TorchMLP):
    """A PyTorch MLP classifier (ReLU, softmax) that stops early on the held-out log-loss.

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default (64, 64)
    alpha : float, default 1e-4
        L2 penalty on the weights (scikit-learn's scaling: ``alpha / 2 * ||W||^2`` over
        the batch size).
    learning_rate_init : float, default 1e-3
        Adam's step size.
    max_iter : int, default 200
        Epochs at most.
    validation_fraction : float, default 0.2
        Share of the rows held out for early stopping.
    n_iter_no_change : int, default 10
        Epochs without a better held-out loss before stopping (the best weights are kept).
    batch_size : int, default 200
    warm_start : bool, default False
        Continue from the previous fit's network.
    n_threads : int or None, default 1
        torch's intra-op threads during ``fit`` (restored after); ``None`` leaves them.
    random_state : int or None
        Seeds the held-out split and, through ``torch.manual_seed`` inside a forked RNG
        state, the initial weights and the batch order.
    """

    def _loss(self, torch: Any, out: Any, target: Any, w: Any) -> Any:
        nll = torch.nn.functional.cross_entropy(out, target, reduction="none")
        return (nll * w).sum() / w.sum()

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> TorchMLPClassifier:
        """Fit on ``(X, y)``; ``validation_fraction`` of the rows are held out."""
        x = np.asarray(X, dtype=float)
        yy = np.asarray(y)
        w = np.ones(len(yy)) if sample_weight is None else np.asarray(sample_weight, float)
        classes = np.unique(yy)
        previous: np.ndarray | None = getattr(self, "classes_", None)
        if self.warm_start and previous is not None and not np.array_equal(classes, previous):
            raise ValueError(
                f"classes == {classes.tolist()} with warm_start=True, must be the previous "
                f"fit's {previous.tolist()}."
            )
        self.classes_ = classes
        code = np.searchsorted(classes, yy).astype(np.int64)
        self._train(x, code, w, len(classes))
        return self

    def predict_proba(self, X: Any) -> Any:
        """Class probabilities, shape (n, n_classes)."""
        z = self._forward(X)
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, X: Any) -> Any:
        """Most likely class."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


class TorchMLPRegressor(RegressorMixin, _TorchMLP):
    """A PyTorch MLP regressor (ReLU) that stops early on the held-out mean squared error.

    Parameters are those of :class:`TorchMLPClassifier`; the held-out loss is the
    weighted mean squared error. Targets are standardised inside ``fit`` (and
    predictions mapped back), so the default step size suits any scale of Q or reward.
    """

    def _loss(self, torch: Any, out: Any, target: Any, w: Any) -> Any:
        return (((out[:, 0] - target) ** 2) * w).sum() / w.sum()

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> TorchMLPRegressor:
        """Fit on ``(X, y)``; ``validation_fraction`` of the rows are held out."""
        x = np.asarray(X, dtype=float)
        yy = np.asarray(y, dtype=float)
        w = np.ones(len(yy)) if sample_weight is None else np.asarray(sample_weight, float)
        if not (self.warm_start and hasattr(self, "y_mean_")):
            self.y_mean_ = float(np.average(yy, weights=w))
            self.y_scale_ = float(np.sqrt(np.average((yy - self.y_mean_) ** 2, weights=w))) or 1.0
        self._train(x, (yy - self.y_mean_) / self.y_scale_, w, 1)
        return self

    def predict(self, X: Any) -> Any:
        """Predictions, shape (n,)."""
        return self._forward(X)[:, 0] * self.y_scale_ + self.y_mean_
