"""train.py end to end, in subprocesses: learning, accumulation, data parallelism on devices
and hosts, exact resume, safe checkpoints, clear errors."""
import json
import math
import re
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
import datafiles
import files
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
    datafiles.write_dataset(tmp_path / 'data' / 'tiny', {'train.bin': ids[:90_000].tofile, 'val.bin': ids[90_000:].tofile},
                         {'vocab_size': len(chars), 'itos': dict(enumerate(chars)), 'stoi': stoi})
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
    # the same batch of 8, split over 1, 2 or 4 CPU devices
    run(workdir, '--out_dir=one', '--max_iters=5', '--eval_interval=5', '--batch_size=8')
    p = run(workdir, '--out_dir=many', '--max_iters=5', '--eval_interval=5', '--batch_size=8', devices=devices)
    assert f'devices: {devices}' in p.stdout and f'each split over {devices} CPU device(s)' in p.stdout
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
    a = files.load_pickle(workdir / 'straight' / 'ckpt.pkl')
    b = files.load_pickle(workdir / 'split' / 'ckpt.pkl')
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
    ckpt = files.load_pickle(workdir / 'out' / 'ckpt.pkl')
    assert ckpt['iter_num'] >= 3


def test_interrupted_checkpoint_write_leaves_previous_loadable(tmp_path):
    path = tmp_path / 'ckpt.pkl'
    files.save_pickle(path, {'iter_num': 1, 'w': np.ones(3, np.float32)})
    # a writer killed in the middle of writing a large checkpoint over it
    code = ('import sys, numpy as np, files; '
            'files.save_pickle(sys.argv[1], {"iter_num": 2, "w": np.zeros(400_000_000, np.float32)})')
    p = subprocess.Popen([sys.executable, '-c', code, str(path)], cwd=ROOT)
    deadline = time.time() + 60
    while not list(tmp_path.glob('.ckpt.pkl*.tmp')) and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    p.kill()
    p.wait()
    assert files.load_pickle(path)['iter_num'] == 1


class Foreign:
    def __reduce__(self):
        return (os.system, ('echo pwned',))


def test_foreign_pickle_is_refused(workdir):
    out = workdir / 'out'
    out.mkdir()
    with open(out / 'ckpt.pkl', 'wb') as f:
        pickle.dump({'params': Foreign()}, f)
    with pytest.raises(common.UserError, match='refusing to load posix.system'):
        files.load_pickle(out / 'ckpt.pkl')
    p = run(workdir, '--out_dir=out', '--init_from=resume', check=False)
    assert p.returncode == 1 and 'refusing to load posix.system' in p.stderr
    assert 'pwned' not in p.stdout and 'Traceback' not in p.stderr


def test_clear_errors(workdir):
    p = run(workdir, '--lerning_rate=1', check=False)
    assert p.returncode == 1 and "did you mean 'learning_rate'" in p.stderr
    p = run(workdir, '--dropout=1.5', check=False)
    assert p.returncode == 1 and 'dropout must be a number at least 0 and below 1, not 1.5' in p.stderr
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


# ----------------------------------------------------------------------------- Muon

def test_muon_trains_and_two_devices_equal_one(workdir):
    muon = ['--optimizer=muon', '--muon_lr=0.02', '--max_iters=20', '--eval_interval=20']
    run(workdir, '--out_dir=one', *muon, '--batch_size=8')
    run(workdir, '--out_dir=two', *muon, '--batch_size=8', devices=2)
    one, two = train_losses(workdir / 'one'), train_losses(workdir / 'two')
    np.testing.assert_allclose([two[i] for i in one], list(one.values()), rtol=2e-5)
    val = val_losses(workdir / 'one')
    assert val[20] < val[0] - 0.7  # it learns
    ckpt = files.load_pickle(workdir / 'one' / 'ckpt.pkl')
    assert ckpt['config']['optimizer'] == 'muon'
    # the state is Muon's and AdamW's: a momentum for each block matrix, and Adam's two moments
    # for the rest (optax's partition keeps masked placeholders where a part has no state)
    shapes = sorted(a.shape for a in ckpt['opt_state'] if getattr(a, 'ndim', 0) == 3)
    assert (2, 32, 96) in shapes and (2, 128, 32) in shapes


def test_muon_resume_continues_bit_exactly(workdir):
    flags = ['--optimizer=muon', '--eval_interval=5', '--always_save_checkpoint=True']
    run(workdir, '--out_dir=straight', '--max_iters=10', *flags)
    run(workdir, '--out_dir=split', '--max_iters=5', *flags)
    run(workdir, '--out_dir=split', '--max_iters=10', '--init_from=resume', *flags)
    straight, split = train_losses(workdir / 'straight'), train_losses(workdir / 'split')
    assert [split[i] for i in range(6, 11)] == [straight[i] for i in range(6, 11)]
    a, b = (files.load_pickle(workdir / d / 'ckpt.pkl') for d in ('straight', 'split'))
    for x, y in zip(a['opt_state'], b['opt_state']):  # the optimizer state round-trips exactly
        np.testing.assert_array_equal(x, y)
    p = run(workdir, '--out_dir=split', '--max_iters=12', '--init_from=resume', check=False)  # AdamW now
    assert p.returncode == 1 and "trained with optimizer='muon'" in p.stderr


# ----------------------------------------------------------------------------- the schedule

def logged_lrs(out_dir):
    return {r['iter']: r['lr'] for r in map(json.loads, open(out_dir / 'log.jsonl')) if 'lr' in r}


def nanogpt_lr(it, lr, warmup, decay, min_lr):  # nanoGPT's get_lr, written out independently
    if it < warmup:
        return lr * (it + 1) / (warmup + 1)
    if it > decay:
        return min_lr
    ratio = (it - warmup) / (decay - warmup) if decay > warmup else 1.0
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


@pytest.mark.parametrize('warmup, decay', [(2, 8), (6, 6), (0, 4)])
def test_logged_learning_rate_is_the_schedule_and_warmup_equal_to_decay_works(workdir, warmup, decay):
    run(workdir, '--out_dir=out', '--max_iters=10', '--eval_interval=10', f'--warmup_iters={warmup}',
        f'--lr_decay_iters={decay}', '--learning_rate=1e-3', '--min_lr=1e-4')
    lrs = logged_lrs(workdir / 'out')
    assert list(lrs) == list(range(1, 11))
    for it, lr in lrs.items():  # the rate of the step that led to iteration it
        assert lr == pytest.approx(nanogpt_lr(it - 1, 1e-3, warmup, decay, 1e-4), rel=1e-6)


def test_optimizer_uses_the_logged_learning_rate(workdir):
    # Adam's first step moves each weight by lr * g / |g| (weight decay and clipping off), so
    # the weights move by exactly the learning rate the optimizer used
    run(workdir, '--out_dir=a', '--max_iters=1', '--eval_interval=1', '--warmup_iters=3',
        '--lr_decay_iters=6', '--weight_decay=0.0', '--grad_clip=0.0', '--always_save_checkpoint=True')
    first = files.load_pickle(workdir / 'a' / 'ckpt.pkl')['params']['h']['mlp']['c_fc']['weight']
    lr = logged_lrs(workdir / 'a')[1]
    import jax
    import model
    cfg = model.GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=32,
                          vocab_size=files.load_pickle(workdir / 'data/tiny/meta.pkl')['vocab_size'])
    init = np.asarray(model.init_params(cfg, jax.random.key(1337))['h']['mlp']['c_fc']['weight'])
    moved = np.abs(first - init)
    assert np.median(moved) == pytest.approx(lr, rel=1e-3)


def test_warmup_longer_than_decay_is_refused(workdir):
    p = run(workdir, '--out_dir=out', '--warmup_iters=10', '--lr_decay_iters=5', check=False)
    assert p.returncode == 1 and 'warmup_iters (10) is longer than lr_decay_iters (5)' in p.stderr
    assert not (workdir / 'out').exists()  # refused before any work


# ----------------------------------------------------------------------------- nothing lost

def test_scratch_run_refuses_to_replace_a_checkpoint(workdir):
    run(workdir, '--out_dir=out', '--max_iters=3', '--eval_interval=3')
    before = (workdir / 'out' / 'ckpt.pkl').read_bytes()
    p = run(workdir, '--out_dir=out', '--max_iters=3', '--eval_interval=3', check=False)
    assert p.returncode == 1 and '--init_from=resume' in p.stderr and '--overwrite=True' in p.stderr
    assert (workdir / 'out' / 'ckpt.pkl').read_bytes() == before
    run(workdir, '--out_dir=out', '--max_iters=4', '--eval_interval=4', '--overwrite=True')
    assert files.load_pickle(workdir / 'out' / 'ckpt.pkl')['iter_num'] == 4


def test_the_last_iterations_are_evaluated_and_saved(workdir):
    p = run(workdir, '--out_dir=out', '--max_iters=15', '--eval_interval=100')
    assert sorted(val_losses(workdir / 'out')) == [0, 15]
    assert files.load_pickle(workdir / 'out' / 'ckpt.pkl')['iter_num'] == 15
    # the closing summary
    assert 'done: 15 iterations' in p.stdout and 'best val loss' in p.stdout
    assert 'out/ckpt.pkl holds the model of iter 15' in p.stdout
    assert 'sample from it: python sample.py --out_dir=out' in p.stdout
    assert 'loss curves: out/loss.png' in p.stdout and (workdir / 'out' / 'loss.png').stat().st_size > 1000


def test_a_diverging_run_does_not_overwrite_the_best_checkpoint(workdir):
    run(workdir, '--out_dir=out', '--max_iters=5', '--eval_interval=5')
    ckpt = files.load_pickle(workdir / 'out' / 'ckpt.pkl')
    files.save_pickle(workdir / 'out' / 'ckpt.pkl', {**ckpt, 'best_val_loss': ckpt['best_val_loss'] - 2.0})
    before = (workdir / 'out' / 'ckpt.pkl').read_bytes()
    # the next evaluation sees a val loss 2 nats above the best so far: diverged, finite
    p = run(workdir, '--out_dir=out', '--max_iters=10', '--eval_interval=5', '--init_from=resume', check=False)
    assert p.returncode == 1 and 'far above the best' in p.stderr and 'Traceback' not in p.stderr
    assert 'this run wrote no checkpoint; out/ckpt.pkl is as it was' in p.stderr
    assert (workdir / 'out' / 'ckpt.pkl').read_bytes() == before


def test_a_second_run_on_the_same_out_dir_stops_at_once(workdir):
    first = subprocess.Popen([sys.executable, TRAIN, *TINY, '--out_dir=out', '--max_iters=100000',
                              '--eval_interval=100000'], cwd=workdir, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, env={**os.environ, 'PYTHONUNBUFFERED': '1'})
    try:
        for line in first.stdout:
            if line.startswith('iter 2/'):
                break
        p = run(workdir, '--out_dir=out', '--init_from=resume', check=False)
        assert p.returncode == 1 and 'another train.py is running on' in p.stderr
    finally:
        first.kill()
        first.wait()
    # the lock dies with its process: now the run can go on
    run(workdir, '--out_dir=out', '--max_iters=3', '--eval_interval=3', '--overwrite=True')


def test_stale_temporaries_and_a_half_written_log_line_are_cleaned(workdir):
    run(workdir, '--out_dir=out', '--max_iters=2', '--eval_interval=2')
    (workdir / 'out' / '.ckpt.pklx1y2.tmp').write_bytes(b'x' * 1000)  # a save killed half-way
    with open(workdir / 'out' / 'log.jsonl', 'a') as f:
        f.write('{"iter": 3, "loss": 1.2')  # a line cut short
    run(workdir, '--out_dir=out', '--max_iters=4', '--eval_interval=2', '--init_from=resume')
    assert not list((workdir / 'out').glob('*.tmp'))
    records = [json.loads(line) for line in open(workdir / 'out' / 'log.jsonl')]  # every line parses
    assert [r['iter'] for r in records if 'loss' in r] == [1, 2, 3, 4]


def test_a_log_line_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    fd = os.open(tmp_path / 'log.jsonl', os.O_RDWR | os.O_CREAT | os.O_APPEND)
    files.append_line(fd, '{"iter": 1}\n')
    real_write = os.write
    monkeypatch.setattr(os, 'write', lambda fd, data: real_write(fd, data[:5]))  # the disk fills up
    with pytest.raises(OSError):
        files.append_line(fd, '{"iter": 2, "loss": 3.0}\n')
    monkeypatch.setattr(os, 'write', real_write)
    files.append_line(fd, '{"iter": 3}\n')
    os.close(fd)
    assert (tmp_path / 'log.jsonl').read_text() == '{"iter": 1}\n{"iter": 3}\n'


def test_resume_with_other_model_settings_names_both_values(workdir):
    run(workdir, '--out_dir=out', '--max_iters=2', '--eval_interval=2')
    p = run(workdir, '--out_dir=out', '--init_from=resume', '--n_layer=4', check=False)
    assert p.returncode == 1 and 'n_layer is 4 for this run but 2 in' in p.stderr
    # settings not given for this run come from the checkpoint
    p = subprocess.run([sys.executable, TRAIN, '--dataset=tiny', '--out_dir=out', '--init_from=resume',
                        '--max_iters=3', '--eval_interval=3', '--eval_iters=2', '--batch_size=4',
                        '--gradient_accumulation_steps=1', '--dtype=float32'],
                       cwd=workdir, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert files.load_pickle(workdir / 'out' / 'ckpt.pkl')['model_args']['n_layer'] == 2


def test_train_finds_the_projects_data_from_another_directory(workdir, tmp_path_factory):
    project = tmp_path_factory.mktemp('project')  # a copy of the project with its data inside
    for f in ROOT.glob('*.py'):  # the scripts and the modules they import
        (project / f.name).write_bytes(f.read_bytes())
    (project / 'data').mkdir()
    os.rename(workdir / 'data' / 'tiny', project / 'data' / 'tiny')
    elsewhere = tmp_path_factory.mktemp('elsewhere')
    p = subprocess.run([sys.executable, str(project / 'train.py'), *TINY, '--out_dir=out', '--max_iters=2',
                        '--eval_interval=2'], cwd=elsewhere, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert (elsewhere / 'out' / 'ckpt.pkl').exists()  # new output goes where the user is


def test_a_mixed_or_half_written_dataset_is_refused(workdir):
    d = workdir / 'data' / 'tiny'
    (d / 'val.bin').write_bytes((d / 'val.bin').read_bytes()[:-20])  # another val.bin than meta.pkl's
    p = run(workdir, '--out_dir=out', check=False)
    assert p.returncode == 1 and 'do not belong together' in p.stderr
    (d / '.incomplete').write_text('')
    p = run(workdir, '--out_dir=out', check=False)
    assert p.returncode == 1 and 'half-written by an interrupted prepare script' in p.stderr


# ----------------------------------------------------------------------------- one clear line for every bad input

def hostile_pickle(path):
    with open(path, 'wb') as f:
        pickle.dump({'vocab_size': Foreign()}, f)


@pytest.mark.parametrize('args, setup, words', [
    (['--batch_size=0'], None, 'batch_size must be at least 1'),
    (['--gradient_accumulation_steps=0'], None, 'gradient_accumulation_steps must be at least 1'),
    (['--eval_iters=0'], None, 'eval_iters must be at least 1'),
    (['--n_embd=100', '--n_head=3'], None, 'n_embd (100) must be a multiple of n_head (3)'),
    (['--learning_rate=-1'], None, 'learning_rate must be a positive number'),
    (['--max_iters=-5'], None, 'max_iters must be at least 0'),
    (['--beta2=1.5'], None, 'beta2 must be a number at least 0 and below 1'),
    (['--dtype=float64'], None, "dtype must be 'auto', 'float32', 'bfloat16' or 'float16'"),
    (['--optimizer=sgd'], None, "optimizer must be 'adamw' or 'muon'"),
    (['--init_from=resmue'], None, "(did you mean 'resume'?)"),
    (['--block_size=200000'], None, 'fewer than a sequence of block_size + 1'),
    (['--dataset=empty'], 'empty', 'does not hold uint16 tokens'),
    (['--dataset=odd'], 'odd', 'does not hold uint16 tokens'),
    (['--dataset=garbage'], 'garbage', 'meta.pkl is not readable'),
    (['--dataset=hostile'], 'hostile', 'refusing to load posix.system'),
    (['--out_dir=afile'], 'afile', 'afile'),
    (['--init_from=resume', '--out_dir=edited'], 'edited', 'is not a checkpoint written by train.py'),
    (['--wandb_log=True'], 'no_wandb', 'pip install wandb'),
    (['config/broken.py'], 'broken', 'broken.py:2: NameError'),
])
def test_bad_inputs_get_one_error_line(workdir, args, setup, words):
    d = workdir / 'data'
    if setup == 'empty':
        datafiles.write_dataset(d / 'empty', {'train.bin': lambda f: None, 'val.bin': lambda f: None}, {'vocab_size': 3})
    elif setup == 'odd':
        datafiles.write_dataset(d / 'odd', {'train.bin': lambda f: f.write(b'abc'), 'val.bin': lambda f: f.write(b'abc')},
                             {'vocab_size': 3})
    elif setup in ('garbage', 'hostile'):
        (d / setup).mkdir()
        for split in ('train', 'val'):
            np.zeros(100, np.uint16).tofile(d / setup / f'{split}.bin')
        if setup == 'garbage':
            (d / setup / 'meta.pkl').write_bytes(b'\x80\x04garbage')
        else:
            hostile_pickle(d / setup / 'meta.pkl')
    elif setup == 'afile':
        (workdir / 'afile').write_text('not a folder')
    elif setup == 'edited':
        (workdir / 'edited').mkdir()
        files.save_pickle(workdir / 'edited' / 'ckpt.pkl', {'params': {}, 'iter_num': 3})
    elif setup == 'no_wandb':
        (workdir / 'wandb.py').write_text('raise ImportError("no wandb here")\n')  # shadows any installed one
    elif setup == 'broken':
        (workdir / 'config').mkdir()
        (workdir / 'config' / 'broken.py').write_text('batch_size = 4\nmax_iters = undefined_name\n')
    env = {'PYTHONPATH': str(workdir)} if setup == 'no_wandb' else None
    p = run(workdir, *args, env=env, check=False)
    assert p.returncode == 1, (args, p.stdout[-500:], p.stderr[-1500:])
    assert p.stderr.startswith('error: ') and words in p.stderr, (args, p.stderr[-1500:])
    assert p.stderr.count('\n') == 1 and 'Traceback' not in p.stderr, (args, p.stderr[-1500:])


def test_char_checkpoint_resumed_on_a_bpe_dataset_names_the_vocabularies(workdir):
    run(workdir, '--out_dir=out', '--max_iters=2', '--eval_interval=2')
    ids = np.random.default_rng(0).integers(0, 50257, 5000, dtype=np.uint16)
    datafiles.write_dataset(workdir / 'data' / 'bpe', {'train.bin': ids.tofile, 'val.bin': ids.tofile}, {'tokenizer': 'gpt2'})
    p = run(workdir, '--out_dir=out', '--init_from=resume', '--dataset=bpe', check=False)
    assert p.returncode == 1 and 'a vocabulary of' in p.stderr and '50304' in p.stderr and '--dataset=tiny' in p.stderr


# ----------------------------------------------------------------------------- a newcomer's view

def test_progress_lines_show_iterations_of_all_and_an_eta(workdir):
    p = run(workdir, '--out_dir=out', '--max_iters=8', '--eval_interval=4')
    lines = [l for l in p.stdout.splitlines() if l.startswith('iter ')]
    assert [l.split(':')[0] for l in lines] == [f'iter {i}/8' for i in range(1, 9)]
    assert 'includes compilation' in lines[0]
    assert all(re.search(r', ETA \d+s$', l) for l in lines[2:]), lines
    assert lines[-1].endswith('ETA 0s')
    evals = [l for l in p.stdout.splitlines() if l.startswith('step ')]
    assert [l.split(':')[0] for l in evals] == ['step 0/8', 'step 4/8', 'step 8/8']
    assert all('val bpb' in l for l in evals)
    devices = [l for l in p.stdout.splitlines() if l.startswith('devices: ')]
    assert len(devices) == 1 and 'compute dtype float32 (set)' in devices[0] and 'memory allocator' in devices[0]


def test_gpt2_sized_defaults_on_small_data_warn(workdir):
    p = subprocess.run([sys.executable, TRAIN, '--dataset=tiny', '--out_dir=out', '--max_iters=0', '--n_layer=1',
                        '--n_head=2', '--n_embd=32', '--block_size=64', '--eval_iters=1', '--dtype=float32'],
                       cwd=workdir, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    warning = [l for l in p.stdout.splitlines() if l.startswith('warning:')]
    assert len(warning) == 1 and 'config/train_char.py' in warning[0]
    p = run(workdir, '--out_dir=quiet', '--max_iters=3', '--eval_interval=3', '--warmup_iters=1')
    assert 'warning:' not in p.stdout


def test_nanogpt_flags_are_accepted_with_a_note(workdir):
    p = run(workdir, '--out_dir=out', '--max_iters=1', '--eval_interval=1', '--device=cpu', '--compile=False')
    assert 'note: --device is not needed here' in p.stderr and 'note: --compile is not needed here' in p.stderr


def test_help_explains_every_setting():
    p = subprocess.run([sys.executable, TRAIN, '--help'], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0
    for words in ("init_from                   = 'scratch'", "'resume' (out_dir/ckpt.pkl)", "optimizer",
                  "'muon': Muon for the blocks' weight matrices", "\noptimizer\n", "\ndata\n"):
        assert words in p.stdout, words


def test_a_cpu_splits_its_batch_over_one_device_per_core(workdir):
    env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}  # as a user runs it
    p = subprocess.run([sys.executable, TRAIN, *TINY, '--out_dir=auto', '--max_iters=3', '--eval_interval=3',
                        '--batch_size=6', '--cpu_devices=3'], cwd=workdir, env=env, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    assert 'devices: 3 (cpu) on 1 process(es)' in p.stdout and 'batch 6 x 1 process(es), each split over 3' in p.stdout
    p = subprocess.run([sys.executable, TRAIN, *TINY, '--out_dir=odd', '--max_iters=1', '--eval_interval=1',
                        '--batch_size=5', '--cpu_devices=4'], cwd=workdir, env=env, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0 and 'devices: 1 (cpu)' in p.stdout  # 5 rows split over as many devices as divide 5
