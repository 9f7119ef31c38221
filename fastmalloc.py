"""Restart the running script with a faster memory allocator, when one is installed: import first.

XLA:CPU allocates and frees large buffers at every training step. glibc's malloc hands big blocks
back to the OS and page-faults them in again each step, which makes a step up to 2x slower; an
allocator that keeps freed memory avoids that (the usual CPU advice for PyTorch too). In order:
the system's tcmalloc (`apt install libtcmalloc-minimal4`), else mimalloc from the pip wheel
cmeel-mimalloc (in requirements.txt, for Linux on x86-64 and ARM), each set to keep freed memory.
GPT_NO_FAST_MALLOC=1 keeps glibc's malloc. Importing this module restarts the process (same
arguments, same process id) at most once; ALLOCATOR then says which allocator is in use.
"""
import os
import sys
import sysconfig
import time

# when the command started, carried across the restart (time-to-loss counts from here)
START = float(os.environ.get('GPT_START_TIME') or time.time())
TCMALLOC = ('/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4', '/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4',
            '/usr/lib64/libtcmalloc_minimal.so.4', '/usr/lib/libtcmalloc_minimal.so.4')
MIMALLOC = os.path.join(sysconfig.get_paths()['purelib'], 'cmeel.prefix', 'lib', 'libmimalloc.so')
SETTINGS = {  # keep freed memory: that is the point (measured: tcmalloc's default release rate was erratic)
    'tcmalloc': {'TCMALLOC_RELEASE_RATE': '0'},
    'mimalloc': {'MIMALLOC_PURGE_DELAY': '-1'},
}


def _choose():
    tcmalloc = next((p for p in TCMALLOC if os.path.exists(p)), None)
    if tcmalloc:
        return 'tcmalloc', tcmalloc
    if os.path.exists(MIMALLOC):
        return 'mimalloc', MIMALLOC
    return None, None


def _restart():
    preload = os.environ.get('LD_PRELOAD', '')
    if 'malloc' in preload:  # already restarted, or the user preloads an allocator of their own
        return next((name for name in SETTINGS if name in preload), 'preloaded: ' + preload)
    if os.environ.get('GPT_NO_FAST_MALLOC') or not sys.platform.startswith('linux') or not sys.argv[0].endswith('.py'):
        return "glibc's malloc"
    name, lib = _choose()
    if lib is None:
        return "glibc's malloc (no faster allocator installed)"
    env = dict(os.environ, LD_PRELOAD=f'{lib} {preload}'.strip(), GPT_START_TIME=repr(START), **SETTINGS[name])
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)  # orig_argv: with python's own flags


ALLOCATOR = _restart()
