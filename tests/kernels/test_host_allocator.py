"""The allocator tuning takes effect on glibc: a large block freed and allocated again is not
faulted in again."""

import os
import platform
import subprocess
import sys

import pytest

# in a fresh interpreter, 4 KiB pages (NumPy's huge-page advice off, so faults count pages):
# the minor page faults of allocating and freeing a 64 MiB array, the second time
SECOND_ALLOCATION_FAULTS = """
import resource, numpy as np
from weishang.kernels.host_allocator import retain_freed_memory
if {tune}:
    assert retain_freed_memory()
faults = []
for _ in range(2):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    a = np.ones(8 << 20)
    del a
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(faults[1])
"""


def _faults(tune: bool) -> int:
    env = {**os.environ, "NUMPY_MADVISE_HUGEPAGE": "0"}
    return int(subprocess.run([sys.executable, "-c", SECOND_ALLOCATION_FAULTS.format(tune=tune)],
                              capture_output=True, text=True, check=True, env=env).stdout)


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_retain_freed_memory_reuses_pages_already_mapped():
    pages = (64 << 20) // 4096
    assert _faults(tune=False) > pages // 2  # by default the block is unmapped on free
    assert _faults(tune=True) < pages // 100
