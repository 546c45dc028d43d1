"""The common check suite every policy kind must pass (like scikit-learn's
``estimator_checks``).

Each check takes a *case*: a fresh policy factory plus how to make contexts and
feedback for that kind, so the same checks run on callouts, layouts and any later kind.
:func:`check_policy` runs them all; ``tests/policy/test_common_checks.py`` runs it on
both kinds with non-default hyperparameters.

The checks:

- :func:`check_get_params`: ``get_params()`` names exactly the constructor arguments
  and returns each as given;
- :func:`check_round_trip`: ``from_bytes(to_bytes())`` and ``load(save())`` keep every
  parameter (compared in their encoded JSON form), the learned state bit for bit, and
  every prediction (the same decisions for the same seeds);
- :func:`check_replay`: ``decide(context, seed=d.seed)`` reproduces ``d`` exactly;
- :func:`check_decision_ids`: decision ids have the one format of
  :func:`memberlab.policy.new_decision_id` and are fresh per decision, even for one seed;
- :func:`check_decide_is_read_only`: ``decide`` on seen and unseen contexts leaves the
  model's snapshot bytes (arrays, registries, version) unchanged, generator aside;
- :func:`check_propensities`: propensities are in (0, 1] and match the served
  frequencies over ``n`` decisions with independent seeds: for each choice with logged
  propensity p served m times out of n, ``|m/n - p| <= 4 sqrt(p(1-p)/n) + 2/(d+1)``
  (a 4-sigma binomial band plus the Monte Carlo estimator's own bias bound: propensities
  are ``(1 + matches)/(1 + d)`` with ``d`` draws, and the propensity is itself a Monte
  Carlo estimate with its own s.d. ``sqrt(p(1-p)/d)``, added to the band);
- :func:`check_batch_equals_sequential`: for kinds whose ``update_method`` is
  ``"sequential"``, one ``update`` of a batch equals updates one
  record at a time (the probit ADF promises it);
- :func:`check_bad_input`: malformed snapshots, bad seeds and bad contexts raise
  :class:`~memberlab.DataValidationError` (a wrong schema version
  :class:`~memberlab.SchemaVersionError`).
"""

from __future__ import annotations

import inspect
import math
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from memberlab._errors import DataValidationError, SchemaVersionError
from memberlab.policy._codec import encode_value, read_snapshot
from memberlab.policy._contract import DecisionLike, Policy

#: what :func:`memberlab.policy.new_decision_id` returns (uuid4, 32 lowercase hex digits)
_DECISION_ID = re.compile(r"[0-9a-f]{32}")

__all__ = [
    "PolicyCase",
    "check_bad_input",
    "check_batch_equals_sequential",
    "check_decide_is_read_only",
    "check_decision_ids",
    "check_get_params",
    "check_policy",
    "check_propensities",
    "check_replay",
    "check_round_trip",
]


@dataclass(frozen=True)
class PolicyCase:
    """How to exercise one policy kind.

    Attributes
    ----------
    make : callable returning a fresh, untrained policy
    contexts : list of dict
        Contexts seen in training.
    unseen_context : dict
        A context with values training never saw.
    feedback : callable (policy, rng) -> list
        A batch of the kind's feedback records (learned by ``update``).
    choice_key : callable (choice) -> hashable
        A hashable form of one served choice (item id; a layout's sorted items).
    decide_kwargs : dict
        Extra keyword arguments of ``decide`` (e.g. ``k`` for callouts).
    """

    make: Callable[[], Any]
    contexts: list[dict[str, Any]]
    unseen_context: dict[str, Any]
    feedback: Callable[[Any, np.random.Generator], list[Any]]
    choice_key: Callable[[Any], Any] = lambda c: c
    decide_kwargs: Mapping[str, Any] = field(default_factory=dict)


def _decide(case: PolicyCase, pol: Any, ctx: Mapping[str, Any], **kw: Any) -> DecisionLike:
    return pol.decide(ctx, **dict(case.decide_kwargs), **kw)


def _fingerprint(d: DecisionLike) -> tuple[Any, ...]:
    return (
        [str(c) for c in d.choices],
        [None if p is None else float(p) for p in d.propensities],
        d.policy_version,
        d.seed,
    )


def _trained(case: PolicyCase, seed: int = 0) -> Any:
    pol = case.make()
    rng = np.random.default_rng(seed)
    for _ in range(3):
        pol.update(case.feedback(pol, rng))
    return pol


def _model_bytes(pol: Any) -> tuple[Any, dict[str, bytes]]:
    """The model's learned state without its generator (decide may advance that)."""
    _, state, arrays = read_snapshot(pol.to_bytes(), kind=pol.policy_kind)
    state = {k: v for k, v in state.items() if k != "rng_state"}
    return state, {k: np.ascontiguousarray(v).tobytes() for k, v in arrays.items()}


def check_get_params(case: PolicyCase) -> None:
    pol = case.make()
    params = pol.get_params()
    sig = inspect.signature(type(pol).__init__)
    names = [n for n in sig.parameters if n != "self"]
    assert sorted(params) == sorted(names), (sorted(params), sorted(names))
    for n in names:
        assert params[n] is getattr(pol, n), n


def check_round_trip(case: PolicyCase) -> None:
    pol = _trained(case)
    for load in (lambda: type(pol).from_bytes(pol.to_bytes()), lambda: _via_file(pol)):
        back = load()
        p0 = {k: encode_value(v) for k, v in pol.get_params().items() if k != "rng"}
        p1 = {k: encode_value(v) for k, v in back.get_params().items() if k != "rng"}
        assert p0 == p1, (p0, p1)
        assert _model_bytes(back) == _model_bytes(pol)
        assert back.policy_version == pol.policy_version
        for ctx in [*case.contexts, case.unseen_context]:
            for seed in (0, 1, 2**62 + 12345):
                a = _decide(case, pol, ctx, seed=seed)
                b = _decide(case, back, ctx, seed=seed)
                assert _fingerprint(a) == _fingerprint(b)
        # the generator state travels too: the next drawn seeds agree
        ctx0 = case.contexts[0]
        assert _decide(case, back, ctx0).seed == _decide(case, pol, ctx0).seed


def _via_file(pol: Any) -> Any:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "policy.bin"
        pol.save(path)
        return type(pol).load(path)


def check_replay(case: PolicyCase) -> None:
    pol = _trained(case)
    for ctx in [*case.contexts, case.unseen_context]:
        for rng in (0, 1, 2):
            d = _decide(case, pol, ctx, rng=rng)
            again = _decide(case, pol, ctx, seed=d.seed)
            assert _fingerprint(again) == _fingerprint(d)


def check_decision_ids(case: PolicyCase) -> None:
    pol = _trained(case)
    ctx = case.contexts[0]
    ids = [_decide(case, pol, ctx, seed=7).decision_id for _ in range(3)]
    ids += [_decide(case, pol, c, rng=r).decision_id for c in case.contexts for r in (0, 1)]
    for did in ids:
        assert isinstance(did, str) and _DECISION_ID.fullmatch(did), (
            f"decision id {did!r} is not the one format (memberlab.policy.new_decision_id)"
        )
    assert len(set(ids)) == len(ids), ids  # fresh per decision, even for one seed


def check_decide_is_read_only(case: PolicyCase) -> None:
    pol = _trained(case)
    before = _model_bytes(pol)
    version = pol.policy_version
    for ctx in [*case.contexts, case.unseen_context, {}]:
        for rng in range(3):
            try:
                _decide(case, pol, ctx, rng=rng)
            except DataValidationError:
                # a kind that needs context fields (the value kind's state columns) may
                # refuse an empty context; the refusal must not change the model either
                assert ctx == {}, ctx
    assert pol.policy_version == version
    assert _model_bytes(pol) == before


def check_propensities(case: PolicyCase, *, n: int = 400) -> None:
    pol = _trained(case)
    ctx = case.contexts[0]
    ss = np.random.SeedSequence(2024)
    seeds = [int(s.generate_state(2, np.uint64)[0] >> np.uint64(1)) for s in ss.spawn(n)]
    first = [_decide(case, pol, ctx, seed=s) for s in seeds]
    counts: dict[Any, int] = {}
    props: dict[Any, list[float]] = {}
    for d in first:
        for p in d.propensities:
            assert p is not None and 0.0 < p <= 1.0, p
        key = case.choice_key(d.choices[0])
        counts[key] = counts.get(key, 0) + 1
        props.setdefault(key, []).append(float(d.propensities[0]))  # type: ignore[arg-type]
    draws = _propensity_draws(pol)
    for key, m in counts.items():
        p = float(np.mean(props[key]))
        freq = m / n
        band = (
            4.0 * math.sqrt(p * (1 - p) / n)
            + 4.0 * math.sqrt(p * (1 - p) / draws)
            + 2.0 / (draws + 1)
        )
        assert abs(freq - p) <= band, (key, freq, p, band)


def _propensity_draws(pol: Any) -> int:
    params = pol.get_params()
    if "propensity_draws" not in params:
        raise AssertionError("the policy names no propensity draw count")
    return int(params["propensity_draws"])


def check_batch_equals_sequential(case: PolicyCase) -> None:
    params = case.make().get_params()
    mode = params.get("update_method")
    if mode != "sequential":
        return  # the learner promises it only for sequential ADF
    a, b = case.make(), case.make()
    rng = np.random.default_rng(7)
    batch = case.feedback(a, rng)
    a.update(batch)
    for row in batch:
        b.update([row])
    sa, sb = _model_bytes(a)[1], _model_bytes(b)[1]
    for k in sa:
        np.testing.assert_allclose(
            np.frombuffer(sa[k]), np.frombuffer(sb[k]), rtol=1e-12, atol=1e-14, err_msg=k
        )


def check_bad_input(case: PolicyCase) -> None:
    pol = _trained(case)
    data = pol.to_bytes()
    cls = type(pol)
    bad: Sequence[bytes] = [
        b"",
        b"garbage",
        data[: len(data) // 2],
        data.replace(b'"', b"'", 5),
        data.replace(b'"kind": "', b'"kind": "x', 1),
        data.replace(b'"state": {', b'"stat": {', 1),
    ]
    for blob in bad:
        try:
            cls.from_bytes(blob)
        except DataValidationError:
            continue
        raise AssertionError(f"from_bytes accepted a malformed snapshot {blob[:40]!r}")
    try:
        cls.from_bytes(data.replace(b'"schema_version": 2', b'"schema_version": 77', 1))
    except SchemaVersionError as exc:
        assert "77" in str(exc)
    else:
        raise AssertionError("from_bytes accepted schema_version 77")
    for seed in (-1, 2**63, 1.5, "3", True):
        try:
            _decide(case, pol, case.contexts[0], seed=seed)
        except DataValidationError as exc:
            assert "seed" in str(exc)
        else:
            raise AssertionError(f"decide accepted seed={seed!r}")
    try:
        _decide(case, pol, ["not", "a", "mapping"])  # type: ignore[arg-type]
    except DataValidationError:
        pass
    else:
        raise AssertionError("decide accepted a list as context")


ALL_CHECKS: tuple[Callable[[PolicyCase], None], ...] = (
    check_get_params,
    check_round_trip,
    check_replay,
    check_decision_ids,
    check_decide_is_read_only,
    check_propensities,
    check_batch_equals_sequential,
    check_bad_input,
)


def check_policy(case: PolicyCase) -> None:
    """Run every check on one kind (raises AssertionError on the first failure)."""
    pol = case.make()
    assert isinstance(pol, Policy), f"{type(pol).__name__} does not implement the contract"
    for check in ALL_CHECKS:
        check(case)
