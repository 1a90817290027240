"""Fixtures of the Ray job tests."""

import shutil
import tempfile

import pytest
import ray
from ray._private import ray_constants

from ray_jobs.sweep import SINGLE_NODE_ENV, loopback_only


@pytest.fixture(scope="module")
def local_ray():
    """A real local Ray for one test module (2 CPUs, no dashboard), shut down after it.

    Its workers' output stays in their log files (`log_to_driver=False`): forwarded, a worker
    reaped while a later test of the module ran landed in that test's captured stderr."""
    tmp = tempfile.mkdtemp(prefix="rjs", dir="/tmp")  # short: Ray's socket paths are limited
    ray.init(address="local", include_dashboard=False, num_cpus=2,
             object_store_memory=80 * 1024 * 1024, _temp_dir=tmp, log_to_driver=False)
    yield
    ray.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def single_node(monkeypatch):
    """`loopback_only()` for one test, undone after it: it sets process-wide state (an
    environment variable and a Ray constant) that later tests' Ray starts would inherit."""
    monkeypatch.setenv(SINGLE_NODE_ENV, "0")  # records the value found, restored after
    monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", ray_constants.ENABLE_RAY_CLUSTER)
    loopback_only()
