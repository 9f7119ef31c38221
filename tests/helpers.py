"""What several test files need: a tiny character dataset and a model trained on it a few
steps by train.py itself, and the check that a script failed with one clear line."""
import subprocess
import sys
from pathlib import Path

import numpy as np

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
