"""Restart the current Python process with tcmalloc, when it is installed and not yet in use.

XLA:CPU allocates and frees large buffers at every training step. glibc's malloc hands big
blocks back to the OS and page-faults them in again each step, which can make a step up to
2x slower; tcmalloc keeps them. This is the usual CPU tuning advice for PyTorch as well.
Install it with `apt install libtcmalloc-minimal4`; set GPT_NO_TCMALLOC=1 to skip this.
"""
import os
import sys

CANDIDATES = ('/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4',
              '/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4',
              '/usr/lib64/libtcmalloc_minimal.so.4', '/usr/lib/libtcmalloc_minimal.so.4')


def reexec_with_tcmalloc():
    """Call first thing in a script: returns if nothing is to be done, else never returns."""
    if os.environ.get('GPT_NO_TCMALLOC') or 'malloc' in os.environ.get('LD_PRELOAD', ''):
        return
    lib = next((p for p in CANDIDATES if os.path.exists(p)), None)
    if lib is None or not sys.platform.startswith('linux'):
        return
    env = dict(os.environ, LD_PRELOAD=f"{lib} {os.environ.get('LD_PRELOAD', '')}".strip(),
               TCMALLOC_RELEASE_RATE='0')  # keep freed memory: that is the point
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable] + sys.argv, env)
