"""keep_freed_memory: with it, glibc serves a large tensor from its heap and keeps it when
freed (no mmap per block, no trim); without it (the opt-out), every large block is a fresh mmap."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")

PROBE = textwrap.dedent("""
    import ctypes, json, torch
    from resnetlab.host import keep_freed_memory

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in
                    "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    kept = keep_freed_memory()
    block = torch.empty(64 * 2**20, dtype=torch.uint8)  # 64 MiB: far above glibc's mmap threshold
    while_held = libc.mallinfo2()
    del block
    after_free = libc.mallinfo2()
    print(json.dumps(dict(kept=kept, mmapped=while_held.hblkhd, heap_free=after_free.fordblks)))
""")


def probe(**env) -> dict:
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True,
                            env={**os.environ, **env})
    return json.loads(result.stdout.splitlines()[-1])


def test_large_blocks_come_from_the_heap_and_stay_there():
    on = probe(RESNETLAB_DEFAULT_MALLOC="0")
    assert on["kept"] is True
    assert on["mmapped"] < 64 * 2**20  # the tensor is not a mmap of its own
    assert on["heap_free"] >= 64 * 2**20  # freed, it stays in the process for the next step


def test_the_opt_out_leaves_malloc_as_it_is():
    off = probe(RESNETLAB_DEFAULT_MALLOC="1")
    assert off["kept"] is False
    assert off["mmapped"] >= 64 * 2**20
    assert off["heap_free"] < 64 * 2**20
