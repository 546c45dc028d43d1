"""Rust's (1987) bus engines: NFXP on every sample, and PQR with replace as anchor.

Run: ``.venv/bin/python examples/choice_rust.py``.
"""

from __future__ import annotations

from memberlab.choice import fit_rust, load_rust_bus, rust_pqr, rust_states


def main() -> None:
    frame = load_rust_bus()
    for groups, bins in [((1, 2, 3, 4), 175), ((4,), 90), ((1, 2, 3), 90)]:
        for beta in (0.9999, 0.0):
            res = fit_rust(rust_states(frame, groups=groups, bins=bins), discount=beta)
            print(res.summary(), end="\n\n")
    data = rust_states(frame, groups=(1, 2, 3, 4), bins=175)
    nfxp = fit_rust(data, discount=0.9999)
    pqr = rust_pqr(data, discount=0.9999, theta3=nfxp.theta3)
    print(f"PQR (anchor: replace): RC {pqr.rc:.4f}, theta11 {pqr.theta11:.4f}")
    print(
        f"NFXP:                  RC {nfxp.rc:.4f} ({nfxp.se['RC']:.3f}), "
        f"theta11 {nfxp.theta11:.4f} ({nfxp.se['theta11']:.3f})"
    )


if __name__ == "__main__":
    main()
