"""Restart the running script with a faster memory allocator, when one is installed: import first.

XLA:CPU allocates and frees large buffers at every training step. glibc's malloc hands big blocks
back to the OS and page-faults them in again each step, which makes a step up to 2x slower; an
allocator that keeps freed memory avoids that (the usual CPU advice for PyTorch too). In order:
mimalloc from the pip wheel cmeel-mimalloc (in requirements.txt, for Linux on x86-64 and ARM),
else the system's tcmalloc (`apt install libtcmalloc-minimal4`), each set to keep freed memory
(measured in the README's Performance section). GPT_MALLOC=tcmalloc, mimalloc or glibc picks one. Importing this module restarts the process (same
arguments, same process id) at most once; ALLOCATOR then says which allocator is in use.
"""
import os
import sys
import sysconfig
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT_FOLDERS = (HERE, os.path.join(HERE, 'demos'), os.path.join(HERE, 'tests'))
# when the command started, carried across the restart (time-to-loss counts from here)
START = float(os.environ.get('GPT_START_TIME') or time.time())
TCMALLOC = ('/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4', '/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4',
            '/usr/lib64/libtcmalloc_minimal.so.4', '/usr/lib/libtcmalloc_minimal.so.4')
MIMALLOC = os.path.join(sysconfig.get_paths()['purelib'], 'cmeel.prefix', 'lib', 'libmimalloc.so')
SETTINGS = {  # keep freed memory: that is the point (measured: tcmalloc's default release rate was erratic)
    'tcmalloc': {'TCMALLOC_RELEASE_RATE': '0'},
    'mimalloc': {'MIMALLOC_PURGE_DELAY': '-1'},
}


def _choose(wanted):
    found = {'mimalloc': MIMALLOC if os.path.exists(MIMALLOC) else None,  # the best first
             'tcmalloc': next((p for p in TCMALLOC if os.path.exists(p)), None)}
    name = wanted or next((name for name, lib in found.items() if lib), None)
    return name, found.get(name)


def _restart():
    preload = os.environ.get('LD_PRELOAD', '')
    if 'malloc' in preload:  # already restarted, or the user preloads an allocator of their own
        return next((name for name in SETTINGS if name in preload), 'preloaded: ' + preload)
    wanted = os.environ.get('GPT_MALLOC', '')
    if wanted not in ('', 'glibc', *SETTINGS):
        print(f"error: GPT_MALLOC={wanted} names no allocator this project knows: set it to mimalloc, tcmalloc "
              f"or glibc, or unset it", file=sys.stderr)
        sys.exit(1)
    script = sys.argv[0] if sys.argv and sys.argv[0].endswith('.py') and os.path.isfile(sys.argv[0]) else ''
    if wanted == 'glibc' or not sys.platform.startswith('linux') or os.path.dirname(os.path.abspath(script)) \
            not in SCRIPT_FOLDERS or not script:
        # only this project's scripts restart: not a test runner or a notebook that imports a module
        return "glibc's malloc"
    name, lib = _choose(wanted)
    if lib is None:
        return f"glibc's malloc ({wanted or 'no faster allocator'} not installed)"
    env = dict(os.environ, LD_PRELOAD=f'{lib} {preload}'.strip(), GPT_START_TIME=repr(START), **SETTINGS[name])
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)  # orig_argv: with python's own flags


ALLOCATOR = _restart()
