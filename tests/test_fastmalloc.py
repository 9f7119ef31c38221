"""fastmalloc.py: the restart with a faster allocator, and that the allocator really is in use."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent  # the project folder
sys.path.insert(0, str(ROOT))
import fastmalloc  # noqa: E402  (imported by the test runner, not a project script: no restart)
from helpers import assert_one_error_line  # noqa: E402

PROBE = ROOT / 'tests' / 'malloc_probe.py'


def run_probe(**env):
    e = {k: v for k, v in os.environ.items() if k not in ('LD_PRELOAD', 'GPT_START_TIME', 'GPT_MALLOC')}
    return subprocess.run([sys.executable, str(PROBE)], capture_output=True, text=True, env={**e, **env}, timeout=60)


def probe(**env):
    t0 = time.time()
    p = run_probe(**env)
    assert p.returncode == 0, p.stderr
    name, loaded, since_start = p.stdout.strip().split(' | ')
    return name, loaded.split(), float(since_start), time.time() - t0


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='LD_PRELOAD restarts are for Linux')
def test_mimalloc_from_the_wheel_is_loaded_and_the_start_time_survives_the_restart():
    if not os.path.exists(fastmalloc.MIMALLOC):
        pytest.skip('cmeel-mimalloc is not installed (it has no wheel for this platform)')
    name, (mimalloc, tcmalloc), since_start, wall = probe(GPT_MALLOC='mimalloc')
    assert name == 'mimalloc' and mimalloc == 'True' and tcmalloc == 'False'
    assert 0 < since_start <= wall  # counted from the first start, not from the restart


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='LD_PRELOAD restarts are for Linux')
def test_glibc_when_asked_and_the_best_one_by_default():
    name, loaded, _, _ = probe(GPT_MALLOC='glibc')
    assert name == "glibc's malloc" and loaded == ['False', 'False']
    name, (mimalloc, tcmalloc), _, _ = probe()
    has_tcmalloc = any(os.path.exists(p) for p in fastmalloc.TCMALLOC)
    expected = 'mimalloc' if os.path.exists(fastmalloc.MIMALLOC) else 'tcmalloc' if has_tcmalloc else None
    if expected is None:
        assert name.startswith("glibc's malloc")
    else:
        assert name == expected and {'tcmalloc': tcmalloc, 'mimalloc': mimalloc}[expected] == 'True'


def test_an_allocator_it_does_not_know_is_one_error_line_not_glibc_in_silence():
    for wrong in ('nonsense', 'jemalloc', 'MIMALLOC'):
        p = run_probe(GPT_MALLOC=wrong)
        assert_one_error_line(p, f'GPT_MALLOC={wrong} names no allocator this project knows',
                              'set it to mimalloc, tcmalloc or glibc, or unset it')
        assert p.stdout == ''  # stopped before the script ran
