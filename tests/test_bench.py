"""bench.py: what it refuses before any work, and its --help."""
import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import configurator
from helpers import assert_one_error_line

ROOT = Path(__file__).resolve().parent.parent  # the project folder
BENCH = ROOT / 'bench.py'


def bench(cwd, *args):
    # TMPDIR: where bench.py would make its working folders, to see that a refusal makes none
    env = dict(os.environ, TMPDIR=str(cwd / 'tmp'))
    (cwd / 'tmp').mkdir(exist_ok=True)
    return subprocess.run([sys.executable, str(BENCH), *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env=env)


@pytest.mark.parametrize('args, words', [
    (['--steps=0'], ['steps must be at least 1, not 0']),
    (['--mode=sample', '--max_new_tokens=0'], ['max_new_tokens must be at least 1, not 0']),
    (['--mode=sample', '--num_samples=0'], ['num_samples must be at least 1, not 0']),
    (['--mode=sample', '--keep_fraction=5'], ['keep_fraction must be a number above 0 and at most 1, not 5']),
    (['--mode=samples'], ["mode must be 'train', 'time_to_loss' or 'sample', not 'samples'"]),
    (['--n_layer=0'], ['n_layer must be at least 1, not 0']),  # a setting of train.py's
    (['--mode=sample', '--init_from=resume', '--out_dir=nowhere'], ['no checkpoint at nowhere/ckpt.pkl']),
])
def test_bad_settings_are_one_error_line_before_any_work(tmp_path, args, words):
    p = bench(tmp_path, *args)
    assert_one_error_line(p, *words)
    assert p.stdout == '' and os.listdir(tmp_path / 'tmp') == []  # no dataset made, no folder left


def test_help_lists_the_bench_settings_once_and_nothing_else(tmp_path):
    p = bench(tmp_path, '--help')
    assert p.returncode == 0, p.stderr
    first_line = ast.get_docstring(ast.parse(BENCH.read_text())).splitlines()[0]
    assert p.stdout.count(first_line) == 1  # the docstring once, not twice
    listed = [line.split()[0] for line in p.stdout.split('settings (default values):')[1].splitlines()
              if ' = ' in line]
    assert listed == [name for name, *_ in configurator.read_settings(BENCH)]  # no path of its own among them
