"""plot.py: loss curves from log.jsonl, and what train.py says about them."""
import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent  # the project folder
sys.path.insert(0, str(ROOT))
import plot  # noqa: E402


def write_log(out_dir, runs):
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / 'log.jsonl', 'w') as f:
        for records in runs:
            for it, val in records:
                f.write(json.dumps({'iter': it, 'loss': val + 0.1}) + '\n')
                f.write(json.dumps({'iter': it, 'train_loss': val - 0.1, 'val_loss': val, 'elapsed': 2.0 + it / 10}) + '\n')
        f.write('{"iter": 99, "val_lo')  # a line cut short by a crash


def png_size(path):
    data = Path(path).read_bytes()
    assert data[:8] == b'\x89PNG\r\n\x1a\n'
    return struct.unpack('>II', data[16:24])


def test_read_log_keeps_the_latest_run_and_skips_a_broken_line(tmp_path):
    write_log(tmp_path / 'out', [[(0, 4.0), (10, 3.0)], [(0, 4.1), (10, 2.9), (20, 2.5)]])
    assert [(r['iter'], r['val_loss']) for r in plot.read_log(tmp_path / 'out')] == [(0, 4.1), (10, 2.9), (20, 2.5)]


def test_plot_draws_a_png_of_several_runs(tmp_path):
    pytest.importorskip('matplotlib')
    write_log(tmp_path / 'a', [[(0, 4.0), (10, 3.0), (20, 2.0)]])
    write_log(tmp_path / 'b', [[(0, 4.0), (10, 2.5), (20, 1.8)]])
    p = subprocess.run([sys.executable, str(ROOT / 'plot.py'), str(tmp_path / 'a'), str(tmp_path / 'b'),
                        f'--out={tmp_path / "both.png"}'], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    width, height = png_size(tmp_path / 'both.png')
    assert width > height > 100
    assert not list(tmp_path.glob('.*.tmp'))  # written through a temporary file


def test_plot_errors_are_one_line(tmp_path):
    p = subprocess.run([sys.executable, str(ROOT / 'plot.py'), str(tmp_path / 'nowhere')], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 1 and p.stderr.startswith('error: ') and p.stderr.count('\n') == 1
