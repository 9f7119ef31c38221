"""train.py end to end, in subprocesses: learning, accumulation, data parallelism on devices
and hosts, exact resume, safe checkpoints, clear errors."""
import json
import math
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import common
import configurator

ROOT = Path(__file__).resolve().parent.parent  # the project folder
TRAIN = str(ROOT / 'train.py')
TINY = ['--dataset=tiny', '--n_layer=2', '--n_head=2', '--n_embd=32', '--block_size=32',
        '--batch_size=8', '--gradient_accumulation_steps=1', '--learning_rate=3e-3',
        '--warmup_iters=2', '--lr_decay_iters=40', '--min_lr=3e-4', '--eval_iters=4',
        '--log_interval=1', '--dtype=float32', '--dropout=0.0']


@pytest.fixture
def workdir(tmp_path):
    """A working directory holding data/tiny: the first 100k characters of some English text."""
    text = (ROOT / 'README.md').read_text()
    text = (text * (1 + 100_000 // len(text)))[:100_000]
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    ids = np.array([stoi[c] for c in text], np.uint16)
    d = tmp_path / 'data' / 'tiny'
    d.mkdir(parents=True)
    ids[:90_000].tofile(d / 'train.bin')
    ids[90_000:].tofile(d / 'val.bin')
    with open(d / 'meta.pkl', 'wb') as f:
        pickle.dump({'vocab_size': len(chars), 'itos': dict(enumerate(chars)), 'stoi': stoi}, f)
    return tmp_path


def run(workdir, *args, devices=1, env=None, check=True, timeout=300):
    e = {**os.environ, 'XLA_FLAGS': f'--xla_force_host_platform_device_count={devices}',
         'PYTHONUNBUFFERED': '1', **(env or {})}
    p = subprocess.run([sys.executable, TRAIN, *TINY, *args], cwd=workdir, env=e,
                       capture_output=True, text=True, timeout=timeout)
    if check:
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p


def train_losses(out_dir):
    lines = [json.loads(l) for l in open(out_dir / 'log.jsonl')]
    return {r['iter']: r['loss'] for r in lines if 'loss' in r}


def val_losses(out_dir):
    lines = [json.loads(l) for l in open(out_dir / 'log.jsonl')]
    return {r['iter']: r['val_loss'] for r in lines if 'val_loss' in r}


def test_training_lowers_the_loss_from_about_ln_vocab(workdir):
    run(workdir, '--out_dir=out', '--max_iters=40', '--eval_interval=40')
    vocab = pickle.load(open(workdir / 'data/tiny/meta.pkl', 'rb'))['vocab_size']
    val = val_losses(workdir / 'out')
    assert abs(val[0] - math.log(vocab)) < 0.1  # a fresh model guesses uniformly
    assert val[40] < val[0] - 0.7
    assert (workdir / 'out' / 'ckpt.pkl').exists()


def test_gradient_accumulation_equals_larger_batch(workdir):
    run(workdir, '--out_dir=big', '--max_iters=5', '--eval_interval=100', '--batch_size=8')
    run(workdir, '--out_dir=acc', '--max_iters=5', '--eval_interval=100', '--batch_size=4',
        '--gradient_accumulation_steps=2')
    big, acc = train_losses(workdir / 'big'), train_losses(workdir / 'acc')
    assert list(big) == list(range(1, 6))
    np.testing.assert_allclose([acc[i] for i in big], list(big.values()), rtol=2e-5)


@pytest.mark.parametrize('devices', [2, 4])
def test_data_parallel_equals_one_device(workdir, devices):
    # the same global batch of 8, split over 1, 2 or 4 devices
    run(workdir, '--out_dir=one', '--max_iters=5', '--eval_interval=5', '--batch_size=8')
    p = run(workdir, '--out_dir=many', '--max_iters=5', '--eval_interval=5',
            f'--batch_size={8 // devices}', devices=devices)
    assert f'devices: {devices}' in p.stdout
    one, many = train_losses(workdir / 'one'), train_losses(workdir / 'many')
    np.testing.assert_allclose([many[i] for i in one], list(one.values()), rtol=2e-5)
    np.testing.assert_allclose(list(val_losses(workdir / 'many').values()),
                               list(val_losses(workdir / 'one').values()), rtol=2e-5)


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_two_processes_equal_one_process(workdir):
    run(workdir, '--out_dir=one', '--max_iters=4', '--eval_interval=4', '--batch_size=8')
    port = free_port()
    procs = []
    for i in range(2):
        env = {**os.environ, 'JAX_COORDINATOR_ADDRESS': f'127.0.0.1:{port}', 'JAX_NUM_PROCESSES': '2',
               'JAX_PROCESS_ID': str(i), 'XLA_FLAGS': '--xla_force_host_platform_device_count=1'}
        procs.append(subprocess.Popen(
            [sys.executable, TRAIN, *TINY, '--out_dir=two', '--max_iters=4', '--eval_interval=4',
             '--batch_size=4'], cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True))
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert 'devices: 2 (cpu) on 2 process(es)' in outs[0]
    assert not [l for l in outs[1].splitlines() if l.startswith(('iter ', 'step '))]  # only process 0 logs
    one, two = train_losses(workdir / 'one'), train_losses(workdir / 'two')
    np.testing.assert_allclose([two[i] for i in one], list(one.values()), rtol=2e-5)


def test_resume_continues_bit_exactly(workdir):
    flags = ['--eval_interval=5', '--always_save_checkpoint=True', '--dropout=0.1']
    run(workdir, '--out_dir=straight', '--max_iters=12', *flags)
    run(workdir, '--out_dir=split', '--max_iters=5', *flags)
    run(workdir, '--out_dir=split', '--max_iters=12', '--init_from=resume', *flags)
    straight, split = train_losses(workdir / 'straight'), train_losses(workdir / 'split')
    assert list(split) == list(range(1, 13))
    assert [split[i] for i in range(6, 13)] == [straight[i] for i in range(6, 13)]  # bit for bit
    a = common.load_pickle(workdir / 'straight' / 'ckpt.pkl')
    b = common.load_pickle(workdir / 'split' / 'ckpt.pkl')
    assert a['iter_num'] == b['iter_num'] == 12
    np.testing.assert_array_equal(a['params']['wte'], b['params']['wte'])


def test_non_finite_loss_stops_and_keeps_last_checkpoint(workdir):
    run(workdir, '--out_dir=out', '--max_iters=5', '--eval_interval=5')
    before = (workdir / 'out' / 'ckpt.pkl').read_bytes()
    p = run(workdir, '--out_dir=out', '--max_iters=15', '--eval_interval=5', '--init_from=resume',
            '--learning_rate=1e30', '--grad_clip=0.0', check=False)  # finite, but the weights blow up
    assert p.returncode == 1
    assert 'stopping' in p.stderr and 'this run wrote no checkpoint; out/ckpt.pkl is as it was' in p.stderr
    assert 'Traceback' not in p.stderr and p.stderr.count('\n') == 1
    assert (workdir / 'out' / 'ckpt.pkl').read_bytes() == before


def test_ctrl_c_saves_a_checkpoint(workdir):
    env = {**os.environ, 'PYTHONUNBUFFERED': '1'}
    p = subprocess.Popen([sys.executable, TRAIN, *TINY, '--out_dir=out', '--max_iters=100000',
                          '--eval_interval=100000'], cwd=workdir, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    for line in p.stdout:  # wait until training runs
        if line.startswith('iter 3/'):
            break
    p.send_signal(signal.SIGINT)
    out = p.communicate(timeout=120)[0]
    assert p.returncode == 130, out
    ckpt = common.load_pickle(workdir / 'out' / 'ckpt.pkl')
    assert ckpt['iter_num'] >= 3


def test_interrupted_checkpoint_write_leaves_previous_loadable(tmp_path):
    path = tmp_path / 'ckpt.pkl'
    common.save_pickle(path, {'iter_num': 1, 'w': np.ones(3, np.float32)})
    # a writer killed in the middle of writing a large checkpoint over it
    code = ('import sys, numpy as np, common; '
            'common.save_pickle(sys.argv[1], {"iter_num": 2, "w": np.zeros(400_000_000, np.float32)})')
    p = subprocess.Popen([sys.executable, '-c', code, str(path)], cwd=ROOT)
    deadline = time.time() + 60
    while not list(tmp_path.glob('.ckpt.pkl*.tmp')) and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    p.kill()
    p.wait()
    assert common.load_pickle(path)['iter_num'] == 1


class Foreign:
    def __reduce__(self):
        return (os.system, ('echo pwned',))


def test_foreign_pickle_is_refused(workdir):
    out = workdir / 'out'
    out.mkdir()
    with open(out / 'ckpt.pkl', 'wb') as f:
        pickle.dump({'params': Foreign()}, f)
    with pytest.raises(common.UserError, match='refusing to load posix.system'):
        common.load_pickle(out / 'ckpt.pkl')
    p = run(workdir, '--out_dir=out', '--init_from=resume', check=False)
    assert p.returncode == 1 and 'refusing to load posix.system' in p.stderr
    assert 'pwned' not in p.stdout and 'Traceback' not in p.stderr


def test_clear_errors(workdir):
    p = run(workdir, '--lerning_rate=1', check=False)
    assert p.returncode == 1 and "did you mean 'learning_rate'" in p.stderr
    p = run(workdir, '--dropout=1.5', check=False)
    assert p.returncode == 1 and 'dropout must be at least 0 and below 1, not 1.5' in p.stderr
    p = run(workdir, '--dataset=nope', check=False)
    assert p.returncode == 1 and 'data/nope/train.bin not found' in p.stderr and 'prepare' in p.stderr
    p = run(workdir, '--init_from=resume', '--out_dir=empty', check=False)
    assert p.returncode == 1 and 'no checkpoint at empty/ckpt.pkl' in p.stderr
    (workdir / 'bad').mkdir()
    (workdir / 'bad' / 'ckpt.pkl').write_bytes(b'not a pickle')
    p = run(workdir, '--init_from=resume', '--out_dir=bad', check=False)
    assert p.returncode == 1 and 'bad/ckpt.pkl is not readable' in p.stderr
    assert 'Traceback' not in p.stderr


@pytest.mark.parametrize('config_file', sorted(p.name for p in (ROOT / 'config').glob('*.py')))
def test_config_files_set_only_known_keys(config_file):
    import configurator
    settings = {name: value for name, value, *_ in configurator.read_settings(TRAIN)}  # train.py's defaults
    configurator.configure(settings, [str(ROOT / 'config' / config_file)], quiet=True)
