"""The `cluster` fixture: three chatd processes behind nginx, shared by a test module."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from .cluster import Cluster, running_cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    """The module's cluster (its tests use users of their own)."""
    with running_cluster(tmp_path_factory.mktemp("cluster")) as c:
        yield c
