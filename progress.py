"""What a train.py run shows and records: a progress line with the time left, the evaluations,
out_dir/log.jsonl (one JSON object per line), the closing summary, and Ctrl-C.

Only process 0 prints and writes. Every record carries `elapsed`: the seconds since the command
started, plus those of the runs it resumes, so that a curve against time covers the whole run.
"""
import json
import math
import os
import signal
import sys
import time

import numpy as np

import fastmalloc
import files
from common import UserError


def import_wandb():
    try:
        import wandb
    except ImportError:
        raise UserError('wandb_log=True needs the wandb package: pip install wandb') from None
    return wandb


def duration(seconds):
    seconds = round(seconds)
    return f'{seconds // 3600}h{seconds // 60 % 60:02d}m' if seconds >= 3600 else \
        f'{seconds // 60}m{seconds % 60:02d}s' if seconds >= 60 else f'{seconds}s'


class Progress:
    def __init__(self, out_dir, master, *, max_iters, eval_interval, log_interval, start_iter, tokens_per_iter,
                 flops_per_iter, peak_flops, lr_at, elapsed_before=0.0, on_disk=lambda: '', wandb=None):
        self.master, self.max_iters, self.eval_interval, self.log_interval = master, max_iters, eval_interval, log_interval
        self.tokens_per_iter, self.flops_per_iter, self.peak_flops = tokens_per_iter, flops_per_iter, peak_flops
        self.lr_at, self.on_disk, self.wandb = lr_at, on_disk, wandb
        self.start_iter = self.last_iter = start_iter
        self.start = fastmalloc.START - elapsed_before  # the clock of the whole run, resumes included
        self.t_last = time.time()
        self.step_dt = None  # seconds per step, smoothed, without compilation and evaluations
        self.eval_dt = self.eval_seconds = 0.0
        self.previous = None  # (iter, loss) of the step before the one running now
        self.interrupted = False
        self.log_fd = None
        if master:
            try:
                self.log_fd = os.open(os.path.join(out_dir, 'log.jsonl'), os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
                files.drop_partial_last_line(self.log_fd)  # a line that a crash left half-written
            except OSError as e:
                raise UserError(f'cannot write {out_dir}/log.jsonl ({e.strerror})') from None
            self.log_path = os.path.join(out_dir, 'log.jsonl')
            signal.signal(signal.SIGINT, self._on_ctrl_c)

    def elapsed(self):
        return time.time() - self.start

    def say(self, text):
        if self.master:
            print(text, flush=True)

    def log(self, record):
        """One JSON line in log.jsonl, written whole or not at all (a full disk leaves no half line)."""
        if not self.master:
            return
        try:
            files.append_line(self.log_fd, json.dumps({**record, 'elapsed': self.elapsed()}) + '\n')
        except OSError as e:
            why = 'the disk is full' if e.errno == 28 else e.strerror
            raise UserError(f'could not write {self.log_path} ({why}); {self.on_disk()}') from None
        if self.wandb is not None:
            self.wandb.log(record)

    # ------------------------------------------------------------------------- steps

    def step(self, it, loss):
        """Call once step `it` is dispatched, with its loss (a device array). The loss of the step
        before is read now, while the device works on this one: the host never runs more than a
        step ahead (Ctrl-C is handled after the current step), a non-finite loss stops the run at
        once, and every log_interval steps a line is printed."""
        if self.previous is not None:
            self._report(*self.previous)
        self.previous = (it, loss)

    def flush(self):
        """Read and report the last dispatched step (before an evaluation or the end)."""
        if self.previous is not None:
            self._report(*self.previous)
            self.previous = None

    def _report(self, it, loss):
        loss = float(np.asarray(loss.addressable_data(0)))  # waits for that step
        if not math.isfinite(loss):
            raise UserError(f'loss is {loss} at iter {it}; stopping without saving: {self.on_disk()}. '
                            f'Lower learning_rate or check the data')
        if it % self.log_interval and it != self.max_iters:
            return
        now = time.time()
        steps = it - self.last_iter
        dt = (now - self.t_last) / steps
        warm = self.last_iter > self.start_iter  # the first steps of a run include compilation
        self.t_last, self.last_iter = now, it
        if warm:
            self.step_dt = dt if self.step_dt is None else 0.9 * self.step_dt + 0.1 * dt
        evals_left = self.max_iters // self.eval_interval - it // self.eval_interval + (self.max_iters % self.eval_interval > 0)
        eta = f', ETA {duration((self.max_iters - it) * self.step_dt + evals_left * self.eval_dt)}' if self.step_dt else ''
        lr = self.lr_at(it - 1)  # the rate of the step that led here
        rate = self.flops_per_iter / dt
        mfu = rate / self.peak_flops if self.peak_flops else None
        speed = f'mfu {mfu * 100:.1f}%' if mfu is not None else f'{rate / 1e12:.2f} TFLOP/s'
        self.say(f'iter {it}/{self.max_iters}: loss {loss:.4f}, lr {lr:.2e}, {dt * 1000:.1f} ms/iter, '
                 f'{self.tokens_per_iter / dt:,.0f} tok/s' + (f', {speed}{eta}' if warm else ' (includes compilation)'))
        self.log({'iter': it, 'loss': loss, 'lr': lr, 'ms': dt * 1000, 'tokens_per_s': self.tokens_per_iter / dt,
                  'tflops': rate / 1e12, 'mfu': mfu})

    # ------------------------------------------------------------------------- evaluations

    def evaluate(self, it, estimate_loss):
        """Run estimate_loss() -> {split: (loss, bits per byte or None)}, print and log it; the
        time it takes is left out of the step times."""
        self.flush()
        t = time.time()
        losses = estimate_loss()
        (train_loss, train_bpb), (val_loss, val_bpb) = losses['train'], losses['val']
        bpb = f', val bpb {val_bpb:.4f}' if val_bpb else ''
        extra = ''.join(f', {k} {v:.4f}' for k, v in losses.items() if k not in ('train', 'val'))
        self.say(f'step {it}/{self.max_iters}: train loss {train_loss:.4f}, val loss {val_loss:.4f}{bpb}, '
                 f'val perplexity {math.exp(min(val_loss, 50)):.2f}{extra}, {duration(self.elapsed())} since start')
        self.log({'iter': it, 'train_loss': train_loss, 'val_loss': val_loss, 'train_bpb': train_bpb,
                  'val_bpb': val_bpb, **{k: v for k, v in losses.items() if k not in ('train', 'val')}})
        self.eval_dt = time.time() - t
        self.eval_seconds += self.eval_dt
        self.t_last += self.eval_dt  # step times leave evaluations out
        return losses

    # ------------------------------------------------------------------------- Ctrl-C and the end

    def _on_ctrl_c(self, signum, frame):
        if self.interrupted:
            print(f'\ninterrupted again: quitting without saving; {self.on_disk()}', file=sys.stderr)
            sys.exit(130)
        self.interrupted = True
        print('\ninterrupted: evaluating after this step, then saving as an evaluation does '
              '(Ctrl-C again to quit now)', file=sys.stderr, flush=True)

    def stop_interrupted(self, out_dir):
        then = (f'continue with python train.py ... --init_from=resume --out_dir={out_dir}'
                if os.path.exists(os.path.join(out_dir, 'ckpt.pkl')) else 'nothing to continue: start the run again')
        print(f'stopped: {self.on_disk()}; {then}', file=sys.stderr)
        sys.exit(130)

    def summary(self, iters, best_val_loss, best_iter, out_dir, plot, meta):
        tokens = iters * self.tokens_per_iter
        self.say(f'\ndone: {iters:,} iterations ({tokens / 1e6:,.1f}M tokens) in {duration(time.time() - fastmalloc.START)} '
                 f'({duration(self.eval_seconds)} of it evaluating)')
        self.say(f'best val loss {best_val_loss:.4f}' + (f' at iter {best_iter}' if best_iter is not None else '')
                 + f'; {self.on_disk()}')
        self.say(f'loss curves: {plot}')
        self.say(f'use it: {next_command(out_dir, meta)}')


def next_command(out_dir, meta):
    """A command that works on what this run trained: the demos' own scripts for their datasets,
    and sample.py with a prompt its vocabulary can write."""
    if 'palette' in meta:
        return f'python demos/sample_image.py --out_dir={out_dir}'
    if meta.get('example_len') and meta.get('vocab_size') == 10:
        return f'python demos/eval_addition.py --out_dir={out_dir}'
    stoi = meta.get('stoi') or {}
    if stoi and '\n' not in stoi:  # sample.py's default prompt is a newline
        return f'python sample.py --out_dir={out_dir} --start={min(stoi, key=stoi.get)!r}'
    return f'python sample.py --out_dir={out_dir}'
