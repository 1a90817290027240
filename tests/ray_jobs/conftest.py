"""Fixtures of the Ray job tests."""

import shutil
import tempfile

import pytest
import ray


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
