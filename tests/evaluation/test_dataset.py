"""BanditDataset: validation messages and the Open Bandit Dataset reader.

Reference facts of the OBD samples in the obp 0.4.1 wheel (obp/dataset/obd/, read with
pandas here, independently of the reader): 10,000 rows each; 80 items in ``all``, 34 in
``men``, 46 in ``women``; the random behaviour policy's propensity is 1/n_items at every
position.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from memberlab import DataValidationError
from memberlab.evaluation import BanditDataset, load_obd


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "decision_id": ["a", "a", "b", "c"],
            "item": ["x", "y", "x", "z"],
            "pos": [0, 1, 0, 0],
            "reward": [1.0, 0.0, 0.0, 1.0],
            "p": [0.5, 0.25, 0.5, 1.0],
            "page": ["home", "home", "video", "home"],
            "age": [30.0, 30.0, 41.0, 22.0],
        }
    )


def test_from_frame_builds_design_and_groups() -> None:
    ds = BanditDataset.from_frame(
        _frame(), action="item", propensity="p", position="pos", context=["page", "age"]
    )
    assert ds.n_rounds == 4 and ds.n_actions == 3 and ds.len_list == 2
    assert ds.action_names == ("x", "y", "z")
    assert list(ds.action) == [0, 1, 0, 2]
    assert set(ds.feature_groups) == {"page", "age"}
    assert ds.context.shape == (4, 2)  # page one-hot with the first level dropped, age
    assert ds.drop_feature_group("page").context.shape == (4, 1)
    assert ds.contexts()[2] == {"page": "video", "age": 41.0}


@pytest.mark.parametrize(
    ("column", "row", "value", "match"),
    [
        ("p", 2, 0.0, r"column 'p' row 2: 0\.0, must be in \(0, 1\]"),
        ("p", 1, 1.5, r"column 'p' row 1: 1\.5"),
        ("p", 3, np.nan, r"column 'p' row 3: nan"),
        ("reward", 1, np.inf, r"column 'reward' row 1: inf, must be finite"),
        ("pos", 3, 0.5, r"column 'pos' row 3: 0\.5, must be a whole number"),
        ("pos", 2, -1, r"column 'pos' row 2: -1"),
        ("pos", 1, 0, r"column 'pos' row 1: decision 'a' has position 0 twice"),
    ],
)
def test_validation_names_column_and_row(column: str, row: int, value: float, match: str) -> None:
    f = _frame()
    f[column] = f[column].astype(float)
    f.loc[row, column] = value
    with pytest.raises(DataValidationError, match=match):
        BanditDataset.from_frame(f, action="item", propensity="p", position="pos")


def test_missing_column_and_unknown_action() -> None:
    with pytest.raises(DataValidationError, match="'nope' is missing"):
        BanditDataset.from_frame(_frame(), action="nope", propensity="p")
    with pytest.raises(DataValidationError, match=r"column 'item' row 3: 'z' is not one"):
        BanditDataset.from_frame(_frame(), action="item", propensity="p", actions=["x", "y"])


@pytest.mark.parametrize("behavior", ["random", "bts"])
@pytest.mark.parametrize("campaign", ["all", "men", "women"])
def test_obd_reader_matches_the_raw_csv(obd_wheel: Path, behavior: str, campaign: str) -> None:
    with zipfile.ZipFile(obd_wheel) as zf:
        raw = pd.read_csv(
            io.BytesIO(zf.read(f"obp/dataset/obd/{behavior}/{campaign}/{campaign}.csv")),
            index_col=0,
        )
    ds = load_obd(obd_wheel, behavior=behavior, campaign=campaign)
    n_items = {"all": 80, "men": 34, "women": 46}[campaign]
    assert ds.n_rounds == 10_000 == len(raw)
    assert ds.n_actions == n_items and ds.len_list == 3
    np.testing.assert_array_equal(ds.reward, raw["click"].to_numpy())
    np.testing.assert_array_equal(ds.pscore, raw["propensity_score"].to_numpy())
    np.testing.assert_array_equal(ds.position, raw["position"].to_numpy() - 1)
    assert ds.action_context is not None and ds.action_context.shape[0] == n_items
    if behavior == "random":
        np.testing.assert_allclose(ds.pscore, 1.0 / n_items)


def test_obd_reader_reads_an_extracted_folder(obd_wheel: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(obd_wheel) as zf:
        for name in zf.namelist():
            if name.startswith("obp/dataset/obd/random/men/"):
                zf.extract(name, tmp_path)
    folder = tmp_path / "obp/dataset/obd"
    a = load_obd(folder, behavior="random", campaign="men")
    b = load_obd(obd_wheel, behavior="random", campaign="men")
    np.testing.assert_array_equal(a.context, b.context)
    with pytest.raises(FileNotFoundError, match="obd folder"):
        load_obd(folder, behavior="bts", campaign="men")
