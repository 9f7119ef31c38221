"""plot.py: loss curves from log.jsonl, and what train.py says about them."""
import importlib.util
import json
import os
import resource
import struct
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent  # the project folder
sys.path.insert(0, str(ROOT))
import plot  # noqa: E402
from helpers import assert_one_error_line, run_in_process  # noqa: E402

PLOT = str(ROOT / 'plot.py')
needs_matplotlib = pytest.mark.skipif(importlib.util.find_spec('matplotlib') is None,
                                      reason='drawing needs matplotlib (requirements-dev.txt)')


def write_log(out_dir, runs, bytes_per_token=None):
    """log.jsonl as train.py writes it: a step line and an evaluation line per (iter, val loss),
    with val bits per byte for tokens of bytes_per_token bytes, and a last line cut short."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / 'log.jsonl', 'w') as f:
        for records in runs:
            for it, val in records:
                f.write(json.dumps({'iter': it, 'loss': val + 0.1}) + '\n')
                evaluation = {'iter': it, 'train_loss': val - 0.1, 'val_loss': val, 'elapsed': 2.0 + it / 10}
                if bytes_per_token:
                    evaluation['val_bpb'] = val / (0.6931471805599453 * bytes_per_token)
                f.write(json.dumps(evaluation) + '\n')
        f.write('{"iter": 99, "val_lo')  # a line cut short by a crash


def png_size(path):
    data = Path(path).read_bytes()
    assert data[:8] == b'\x89PNG\r\n\x1a\n'
    return struct.unpack('>II', data[16:24])


def run_plot(*args, cwd=None, **kw):
    return subprocess.run([sys.executable, PLOT, *map(str, args)], capture_output=True, text=True, timeout=120,
                          cwd=cwd, **kw)


def test_read_log_keeps_the_latest_run_and_skips_a_broken_line(tmp_path):
    write_log(tmp_path / 'out', [[(0, 4.0), (10, 3.0)], [(0, 4.1), (10, 2.9), (20, 2.5)]])
    assert [(r['iter'], r['val_loss']) for r in plot.read_log(tmp_path / 'out')] == [(0, 4.1), (10, 2.9), (20, 2.5)]


def test_read_log_passes_over_lines_that_are_not_records_of_train_py(tmp_path):
    write_log(tmp_path / 'out', [[(0, 4.0), (10, 3.0)]])
    with open(tmp_path / 'out' / 'log.jsonl', 'ab') as f:
        f.write(b'\n' + b'\n'.join([
            b'{"iter": 20, "val_loss": 2.0, "note": "caf\xe9"}',  # not UTF-8
            b'[1, 2, 3]', b'"text"', b'42',  # JSON, but not objects
            b'{"val_loss": 1.0}', b'{"iter": "30", "val_loss": 1.0}', b'{"iter": 3.5, "val_loss": 1.0}',  # no iteration
            b'{"iter": 40, "val_loss": "low"}', b'{"iter": 40, "val_loss": true}',  # no loss
            b'{"iter": 1' + b'0' * 400 + b', "val_loss": 1.0}', b'{"iter": 50, "val_loss": 1e308}',  # past float32
            b'[' * 100000,  # nested past Python's recursion limit
        ]) + b'\n')
    assert [(r['iter'], r['val_loss']) for r in plot.read_log(tmp_path / 'out')] == [(0, 4.0), (10, 3.0)]


@needs_matplotlib
def test_plot_draws_a_png_of_several_runs(tmp_path):
    write_log(tmp_path / 'a', [[(0, 4.0), (10, 3.0), (20, 2.0)]])
    write_log(tmp_path / 'b', [[(0, 4.0), (10, 2.5), (20, 1.8)]])
    p = run_plot(tmp_path / 'a', tmp_path / 'b', f'--out={tmp_path / "both.png"}')
    assert p.returncode == 0, p.stderr
    assert p.stdout == f'wrote {tmp_path / "both.png"} (loss in nats per token)\n'
    width, height = png_size(tmp_path / 'both.png')
    assert width > height > 100
    assert not list(tmp_path.glob('.*.tmp'))  # written through a temporary file


@needs_matplotlib
def test_several_runs_without_out_go_to_loss_compare_png_here_not_into_a_run(tmp_path, capsys, monkeypatch):
    for name in 'abc':
        write_log(tmp_path / name, [[(0, 4.0), (10, 3.0)]])
    (tmp_path / 'here').mkdir()
    monkeypatch.chdir(tmp_path / 'here')
    p = run_in_process(capsys, plot.main, ['../a', '../b', '../c'])
    assert p.returncode == 0, p.stderr
    assert p.stdout == 'wrote loss-compare.png (loss in nats per token)\n'
    png_size(tmp_path / 'here' / 'loss-compare.png')
    assert not [d for d in 'abc' if (tmp_path / d / 'loss.png').exists()]  # no run's own plot overwritten
    p = run_in_process(capsys, plot.main, ['../a'])  # one run: its own loss.png
    assert p.stdout == 'wrote ../a/loss.png (loss in nats per token)\n'
    png_size(tmp_path / 'a' / 'loss.png')


@needs_matplotlib
def test_runs_with_other_tokens_are_compared_in_bits_per_byte(tmp_path, capsys):
    write_log(tmp_path / 'chars', [[(0, 4.0), (10, 1.5)]], bytes_per_token=1)
    write_log(tmp_path / 'bpe', [[(0, 7.0), (10, 4.5)]], bytes_per_token=3.6)
    write_log(tmp_path / 'chars2', [[(0, 4.2), (10, 1.4)]], bytes_per_token=1)
    write_log(tmp_path / 'old', [[(0, 4.2), (10, 1.4)]])  # logged before val_bpb was: nats only
    out = tmp_path / 'compare.png'
    said = lambda *runs: run_in_process(capsys, plot.main, [*map(str, runs), f'--out={out}']).stdout
    assert said(tmp_path / 'chars', tmp_path / 'bpe') == f"wrote {out} (loss in bits per byte: the runs' tokens differ)\n"
    assert said(tmp_path / 'chars', tmp_path / 'chars2') == f'wrote {out} (loss in nats per token)\n'
    assert said(tmp_path / 'chars', tmp_path / 'old') == f'wrote {out} (loss in nats per token)\n'
    with open(tmp_path / 'bpe' / 'log.jsonl', 'a') as f:  # an edited line: a val_bpb that is no number
        f.write('\n' + json.dumps({'iter': 20, 'val_loss': 4.0, 'val_bpb': 'x'}) + '\n')
    assert said(tmp_path / 'chars', tmp_path / 'bpe') == f'wrote {out} (loss in nats per token)\n'


@pytest.mark.parametrize('args, words', [
    ([], ['the following arguments are required: OUT_DIR', '--help lists the options']),
    (['{run}', '--dpi=300'], ['unrecognized arguments: --dpi=300']),
    (['{run}', '--out={tmp}/missing/loss.png'], ['the folder of', 'missing/loss.png does not exist']),
    (['{run}', '--out={tmp}'], ['is a folder: give --out a file name, such as', 'loss.png']),
    (['{tmp}/nowhere'], ['cannot read', 'nowhere/log.jsonl (No such file or directory)', 'give the out_dir of a train.py run']),
    (['{tmp}/empty'], ['empty/log.jsonl holds no evaluation yet: plot it after the first one']),
    (['{tmp}/garbage'], ['garbage/log.jsonl holds no evaluation yet: plot it after the first one']),
    (['{run}', '{tmp}/garbage'], ['garbage/log.jsonl holds no evaluation yet']),
])
def test_bad_arguments_and_logs_are_one_error_line(tmp_path, capsys, args, words):
    write_log(tmp_path / 'run', [[(0, 4.0), (10, 3.0)]])
    (tmp_path / 'empty').mkdir()
    (tmp_path / 'empty' / 'log.jsonl').write_bytes(b'')
    (tmp_path / 'garbage').mkdir()
    (tmp_path / 'garbage' / 'log.jsonl').write_bytes(b'\x00\xff garbage\n[1]\n{"loss": 2}\n{"iter": 5, "loss": 2.0}\n')
    argv = [a.format(run=tmp_path / 'run', tmp=tmp_path) for a in args]
    p = run_in_process(capsys, plot.main, argv)
    assert_one_error_line(p, *words)
    assert 'matplotlib' not in p.stderr and p.stdout == ''
    assert not list(tmp_path.rglob('*.png')) and not list(tmp_path.rglob('.*.tmp'))


def test_the_script_ends_a_bad_call_with_one_error_line(tmp_path):
    assert_one_error_line(run_plot(), 'the following arguments are required: OUT_DIR')
    assert_one_error_line(run_plot(tmp_path / 'nowhere'), 'nowhere/log.jsonl')


# python -c this SIZE ...: the rest of the command run with writes past SIZE bytes failing (EFBIG),
# as on a full disk: plot.py (a path) as its own __main__, or a line of Python. The process sets
# its limit itself (a preexec_fn would fork a test process that runs JAX's threads).
LIMITED = """import resource, runpy, sys
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
sys.argv = sys.argv[2:]
if sys.argv[0].endswith('.py'):
    runpy.run_path(sys.argv[0], run_name='__main__')
else:
    exec(sys.argv[0])"""


def with_file_size_limit(size, *command, **kw):
    import matplotlib.font_manager  # noqa: F401  (its font cache built here: the limited process has nothing else to write)
    return subprocess.run([sys.executable, '-c', LIMITED, str(size), *map(str, command)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, **kw)


@needs_matplotlib
@pytest.mark.skipif(not hasattr(resource, 'RLIMIT_FSIZE'), reason='needs a file size limit (POSIX)')
def test_a_plot_that_cannot_be_written_leaves_the_old_one_and_says_why_in_one_line(tmp_path):
    write_log(tmp_path / 'out', [[(0, 4.0), (10, 3.0), (20, 2.0)]])
    (tmp_path / 'out' / 'loss.png').write_bytes(b'the old plot')
    p = with_file_size_limit(4096, PLOT, tmp_path / 'out')
    assert_one_error_line(p, f'could not write {tmp_path / "out" / "loss.png"} (File too large)')
    assert (tmp_path / 'out' / 'loss.png').read_bytes() == b'the old plot'
    assert sorted(os.listdir(tmp_path / 'out')) == ['log.jsonl', 'loss.png']  # no temporary left


@needs_matplotlib
@pytest.mark.skipif(not hasattr(resource, 'RLIMIT_FSIZE'), reason='needs a file size limit (POSIX)')
def test_train_pys_summary_line_never_raises(tmp_path):
    # what train.py prints at the end of a run, after its checkpoint is saved: where the plot
    # went, or why it did not, in a few words, never a traceback
    write_log(tmp_path / 'out', [[(0, 4.0), (10, 3.0)]])
    (tmp_path / 'none').mkdir()
    (tmp_path / 'none' / 'log.jsonl').write_text(json.dumps({'iter': 0, 'loss': 4.2}) + '\n')
    summary = 'import sys, plot; print(plot.plot_summary(sys.argv[1]))'
    run = lambda out_dir: subprocess.run([sys.executable, '-c', summary, str(out_dir)], cwd=ROOT,
                                         capture_output=True, text=True, timeout=120)
    p = with_file_size_limit(4096, summary, tmp_path / 'out')  # the disk full at the end of the run
    assert p.returncode == 0 and p.stderr == '', p.stderr
    assert p.stdout == (f'not drawn (could not write {tmp_path / "out" / "loss.png"} (File too large)); '
                        f'python plot.py {tmp_path / "out"} draws them later\n')
    assert sorted(os.listdir(tmp_path / 'out')) == ['log.jsonl']
    p = run(tmp_path / 'none')  # a run that stopped before its first evaluation
    assert p.returncode == 0 and p.stdout.startswith('not drawn (') and 'holds no evaluation yet' in p.stdout
    p = run(tmp_path / 'out')
    assert p.returncode == 0 and p.stdout == f'{tmp_path / "out" / "loss.png"}\n'


@needs_matplotlib
def test_a_read_only_folder_is_one_error_line(tmp_path):
    write_log(tmp_path / 'out', [[(0, 4.0), (10, 3.0)]])
    os.chmod(tmp_path / 'out', 0o555)
    try:
        try:
            (tmp_path / 'out' / 'probe').touch()
            pytest.skip('this user writes into read-only folders (root, with its capabilities)')
        except PermissionError:
            pass
        assert_one_error_line(run_plot(tmp_path / 'out'), f'could not write {tmp_path / "out" / "loss.png"}',
                              'Permission denied')
    finally:
        os.chmod(tmp_path / 'out', 0o755)
    assert sorted(os.listdir(tmp_path / 'out')) == ['log.jsonl']
