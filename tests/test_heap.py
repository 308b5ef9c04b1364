"""attn.heap gives freed memory back after a job or a command (issue 16: a process calling the CLI
600 times grew from 230 MB to 830 MB resident)."""
import platform

import psutil
import torch

from attn import heap


def test_freed_tensors_are_given_back_to_the_os():
    if platform.libc_ver()[0] != "glibc":
        assert heap._malloc_trim() is None  # nothing to trim, and nothing breaks
        heap.return_freed_memory()
        return
    proc = psutil.Process()
    # many small blocks (below glibc's mmap threshold) with a few kept among them: freeing the
    # rest leaves the heap's pages resident until they are trimmed
    blocks = [torch.ones(4_000) for _ in range(20_000)]  # ~320 MB of 16 kB tensors
    kept = blocks[::50]
    del blocks
    before = proc.memory_info().rss
    heap.return_freed_memory()
    assert before - proc.memory_info().rss > 100 * 2 ** 20, "the freed pages stayed resident"
    assert len(kept) == 400
