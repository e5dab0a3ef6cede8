"""GetProfile on real public datasets (scikit-learn's bundled tables) uploaded as CSV.

The statistics themselves are checked against pandas in libs/profile/tests; here the
service must serve, over the wire, the profile the library computes from the stored
Parquet, and store the source rows unchanged. The bundled files start with a
non-standard header (row and column counts, then class names), so a proper CSV is made
from ``load_*(as_frame=True)``; the class column holds the class names (categorical).
"""

from __future__ import annotations

import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_iris, load_wine

from ferry.ingest.v1 import ingest_pb2 as pb
from ferry_ingest.messages import profile_to_proto
from ferry_ingest.testing import Ingest
from ferry_profile import ProfileBuilder

LOADERS = {"wine": load_wine, "iris": load_iris, "breast-cancer": load_breast_cancer}


def _frame(name: str) -> pd.DataFrame:
    bunch = LOADERS[name](as_frame=True)
    frame: pd.DataFrame = bunch.frame.copy()
    frame["target"] = [str(bunch.target_names[i]) for i in bunch.target]
    return frame


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_get_profile_serves_the_profile_of_the_stored_rows(ingest: Ingest, name: str) -> None:
    frame = _frame(name)
    version = ingest.upload(name, frame.to_csv(index=False).encode(), chunk_size=4096)
    profile = ingest.stub.GetProfile(pb.GetProfileRequest(name=f"datasets/{name}/versions/latest"))

    assert profile.name == version.name and profile.row_count == len(frame)
    assert [c.name for c in profile.columns] == list(frame.columns)
    assert profile.columns[-1].categorical.distinct_count == frame["target"].nunique()

    # The stored Parquet, read by pyarrow straight from the bucket (or directory), is the source...
    stored = ingest.read_from_store(version.uri)
    pd.testing.assert_frame_equal(stored.to_pandas(), frame, check_dtype=False, check_exact=True)
    # ... and GetProfile serves the library's profile of it.
    builder = ProfileBuilder(stored.schema)
    builder.add(stored)
    expected = profile_to_proto(version.name, "", builder.result())
    for served, computed in zip(profile.columns, expected.columns, strict=True):
        if served.HasField("numeric"):
            # Batches were cut elsewhere: the moments may differ in the last bits.
            assert served.numeric.mean == pytest.approx(computed.numeric.mean, rel=1e-12)
            assert served.numeric.std == pytest.approx(computed.numeric.std, rel=1e-9)
            for message in (served, computed):
                message.numeric.ClearField("mean")
                message.numeric.ClearField("std")
    assert profile == expected
