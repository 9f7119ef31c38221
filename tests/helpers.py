"""What several test files need: a tiny character dataset and a model trained on it a few
steps by train.py itself, and the check that a script failed with one clear line."""
import builtins
import contextlib
import http.server
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import common
import datafiles

ROOT = Path(__file__).resolve().parent.parent  # the project folder
CHARS_TEXT = 'ROMEO: hello, world.\nJULIET: goodbye.\n' * 300


def char_dataset(data_dir, text=CHARS_TEXT, val_from=9000):
    """A character dataset of text in data_dir, written as the prepare scripts write one."""
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    ids = np.array([stoi[c] for c in text], np.uint16)
    datafiles.write_dataset(data_dir, {'train.bin': ids[:val_from].tofile, 'val.bin': ids[val_from:].tofile},
                         {'vocab_size': len(chars), 'itos': dict(enumerate(chars)), 'stoi': stoi})


def train_char_model(cwd, iters=30, *extra):
    """data/chars in cwd and out/ckpt.pkl: a 2-layer model train.py trained `iters` steps on it."""
    char_dataset(Path(cwd) / 'data' / 'chars')
    p = subprocess.run([sys.executable, str(ROOT / 'train.py'), '--dataset=chars', '--out_dir=out', '--n_layer=2',
                        '--n_head=2', '--n_embd=32', '--block_size=32', '--batch_size=8',
                        '--gradient_accumulation_steps=1', f'--max_iters={iters}', f'--eval_interval={iters}',
                        '--eval_iters=2', '--learning_rate=1e-2', '--warmup_iters=0', '--log_interval=10', *extra],
                       cwd=cwd, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return Path(cwd) / 'out'


def assert_one_error_line(result, *words):
    """Exit status 1 and, on stderr, nothing but one `error: ...` line holding each of words."""
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])


def run_in_process(capsys, main, *args):
    """What running the script would show, without starting Python again: main(*args) under
    common.run_main, as a script's last line calls it, and its exit status, stdout and stderr
    (read with pytest's capsys) as a subprocess.CompletedProcess."""
    capsys.readouterr()  # what came before is not this run's
    try:
        common.run_main(main, *args)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else int(e.code is not None)
    out = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), code, out.out, out.err)


def run_script_in_process(capsys, script, *argv):
    """run_in_process for a script that runs at module level (no main()): its file run as
    __main__ with sys.argv = [script, *argv]; sys.argv, sys.path, sys.excepthook and the
    handlers of SIGINT and SIGPIPE put back afterwards."""
    import runpy
    import signal
    handled = [s for s in (signal.SIGINT, getattr(signal, 'SIGPIPE', None)) if s is not None]
    saved = sys.argv, list(sys.path), sys.excepthook, [signal.getsignal(s) for s in handled]
    sys.argv = [str(script), *map(str, argv)]
    try:
        return run_in_process(capsys, runpy.run_path, str(script), None, '__main__')
    finally:
        sys.argv, sys.path[:], sys.excepthook, handlers = saved
        for s, handler in zip(handled, handlers):
            signal.signal(s, handler)


PROGRESS_LINE = re.compile(r'.*\[\d+:\d\d(:\d\d)?[<,\]]')  # tqdm's bar: ... [elapsed<left, rate] or [elapsed, rate]


def assert_one_error_line_after_progress(result, *words):
    """assert_one_error_line for a script that may have drawn progress bars (tqdm, on stderr)
    before it failed: nothing but those bars, then the one `error: ...` line."""
    *bars, last = result.stderr.splitlines() or ['']
    assert all(PROGRESS_LINE.match(line) or not line.strip() for line in bars), result.stderr
    assert_one_error_line(subprocess.CompletedProcess(result.args, result.returncode, result.stdout, last + '\n'),
                          *words)


needs_dev_full = pytest.mark.skipif(not os.path.exists('/dev/full'), reason="needs Linux's /dev/full to fill a disk")


@contextlib.contextmanager
def full_disk_at(name):
    """While in the block, writes to a file called `name` or to a temporary of it (.NAME*.tmp)
    fail as on a full disk: the file is made, but its descriptor is the kernel's /dev/full, which
    answers every write with ENOSPC."""
    def is_it(fd):
        path = os.path.basename(os.readlink(f'/proc/self/fd/{fd}'))
        return path == name or (path.startswith(f'.{name}') and path.endswith('.tmp'))

    def fill(fd):
        if is_it(fd):
            full = os.open('/dev/full', os.O_WRONLY)
            os.dup2(full, fd)
            os.close(full)
        return fd

    fdopen, open_ = os.fdopen, builtins.open

    def open_and_fill(path, *args, **kwargs):
        f = open_(path, *args, **kwargs)
        fill(f.fileno())
        return f

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, 'fdopen', lambda fd, *args, **kwargs: fdopen(fill(fd), *args, **kwargs))
        patch.setattr(builtins, 'open', open_and_fill)
        yield


def cut_off_server(data):
    """A server that promises all of data, sends the first half and hangs up."""
    class CutOff(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[:len(data) // 2])
            self.wfile.flush()
            self.close_connection = True

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), CutOff)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
