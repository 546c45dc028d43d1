"""One contract for every decision policy (callouts, layouts and later kinds).

- :class:`Policy` and :class:`DecisionLike`: the protocol and the decision's fields;
- :class:`PolicyCodecMixin`: ``get_params`` from the constructor signature and the one
  snapshot codec (JSON header + ``.npz``, :data:`SCHEMA_VERSION`);
- :func:`new_seed`, :func:`draw_seed`, :func:`check_seed`, :data:`SEED_BOUND`: the one
  seed rule; :func:`new_decision_id`: the one decision id format;
- :func:`check_exploration`: the exploration scale every kind takes;
- :mod:`memberlab.policy.checks`: the common check suite run on every kind.
"""

from memberlab.policy._codec import (
    MAGIC,
    PARAM_ARRAY_PREFIX,
    SCHEMA_VERSION,
    PolicyCodecMixin,
    decode_value,
    encode_value,
    read_snapshot,
    write_snapshot,
)
from memberlab.policy._contract import DecisionLike, Policy
from memberlab.policy._params import check_exploration
from memberlab.policy._seeds import SEED_BOUND, check_seed, draw_seed, new_decision_id, new_seed

__all__ = [
    "MAGIC",
    "PARAM_ARRAY_PREFIX",
    "SCHEMA_VERSION",
    "SEED_BOUND",
    "DecisionLike",
    "Policy",
    "PolicyCodecMixin",
    "check_exploration",
    "check_seed",
    "decode_value",
    "draw_seed",
    "encode_value",
    "new_decision_id",
    "new_seed",
    "read_snapshot",
    "write_snapshot",
]
