"""Run by test_fastmalloc.py: which allocator this process ended up with, and since when it runs."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import fastmalloc  # noqa: E402

maps = open('/proc/self/maps').read()
print(fastmalloc.ALLOCATOR, '|', 'libmimalloc' in maps, 'libtcmalloc' in maps, '|', time.time() - fastmalloc.START)
