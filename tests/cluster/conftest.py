"""The `cluster` fixture: three chatd processes behind nginx, shared by a test module."""
from __future__ import annotations

import gc
import warnings
from collections.abc import Iterator

import pytest
import pytest_asyncio

from chatd.testing import aclose_ws_clients

from .cluster import Cluster, running_cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    """The module's cluster (its tests use users of their own)."""
    with running_cluster(tmp_path_factory.mktemp("cluster")) as c:
        yield c
    # Client sockets to nginx that its exit left half-closed are collected here, not as a
    # ResourceWarning in whatever test runs next. (Which client leaves them is not found yet;
    # the closing note says so.)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@pytest_asyncio.fixture(autouse=True)
async def close_cluster_clients():
    """After each test, close its sockets and cut those nobody answers (processes were stopped,
    nginx holds half-closed ones): else they are collected later, a ResourceWarning in another test."""
    yield
    await aclose_ws_clients(handshake_s=0.5)
