"""Loss curves of training runs, from their log.jsonl, as a PNG.

    python plot.py out-char                      # -> out-char/loss.png
    python plot.py out-adamw out-muon            # -> loss-compare.png, both runs in one picture
    python plot.py out-adamw out-muon --out=compare.png

Left: val loss at each evaluation and the training loss of the logged steps, against iterations;
right: val loss against the seconds since the command started (what time to a good model means).
Runs whose tokens differ (characters against a BPE, say) are compared in bits per byte, the
loss that does not depend on the tokenizer. train.py draws out_dir/loss.png itself at the end of
a run.
"""
import argparse
import json
import math
import os
import sys

from common import ArgumentParser, UserError, run_main
from configurator import FLOAT32_MAX, INT32_MAX


def is_logged_number(value, most=FLOAT32_MAX):
    """A number as train.py logs one (float32's range, or inf or nan; iterations up to 2**31 - 1):
    an edited line's 1e308 or 10**400 is passed over, not a traceback inside matplotlib."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return abs(value) <= most or (isinstance(value, float) and not math.isfinite(value))


def read_log(out_dir, steps=False):
    """The evaluation records of out_dir/log.jsonl (the latest run's, if several runs wrote it);
    steps=True: the records of the logged training steps instead. Lines that are not whole JSON
    objects with an iteration and a loss (cut short by a crash, edited) are passed over."""
    records = []
    try:
        with open(os.path.join(out_dir, 'log.jsonl'), 'rb') as f:
            for line in f:
                try:
                    r = json.loads(line)
                except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested past Python's limit
                    continue
                if not isinstance(r, dict) or not is_logged_number(r.get('iter'), INT32_MAX) or type(r['iter']) is not int:
                    continue
                if r['iter'] == 0 and 'val_loss' in r:
                    records = []  # a new run from scratch starts a new curve
                if is_logged_number(r.get('loss' if steps else 'val_loss')):
                    records.append(r)
    except OSError as e:
        raise UserError(f'cannot read {out_dir}/log.jsonl ({e.strerror}): give the out_dir of a train.py run') from None
    return records


def nats_per_bit_of_text(records):
    """val_loss / val_bpb: constant for one dataset, different for different tokenizations."""
    ratios = [r['val_loss'] / r['val_bpb'] for r in records
              if is_logged_number(r.get('val_bpb')) and r['val_bpb'] > 0]
    return sum(ratios) / len(ratios) if ratios and len(ratios) == len(records) else None


def plot_losses(*out_dirs, path=None):
    """Draw the loss curves of the runs in out_dirs into path (one run: its loss.png; several:
    loss-compare.png here) -> (the path, the loss's unit). Raises UserError naming what is missing."""
    runs = {d: read_log(d) for d in out_dirs}
    if empty := [d for d, records in runs.items() if not records]:
        raise UserError(f'{empty[0]}/log.jsonl holds no evaluation yet: plot it after the first one')
    path = path or (os.path.join(out_dirs[0], 'loss.png') if len(out_dirs) == 1 else 'loss-compare.png')
    if os.path.isdir(path):
        raise UserError(f'{path} is a folder: give --out a file name, such as {os.path.join(path, "loss.png")}')
    if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        raise UserError(f'the folder of {path} does not exist: make it first, or give --out another path')
    ratios = [nats_per_bit_of_text(records) for records in runs.values()]
    bpb = len(runs) > 1 and None not in ratios and max(ratios) > 1.01 * min(ratios)  # other tokens
    key, unit = ('val_bpb', 'bits per byte') if bpb else ('val_loss', 'nats per token')

    try:  # only now: what is wrong with the runs or --out is said without it
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError('plotting needs matplotlib: pip install matplotlib') from None
    fig, (by_iter, by_time) = plt.subplots(1, 2, figsize=(10, 3.6), dpi=80)
    for d, records in runs.items():
        name = os.path.basename(os.path.normpath(d))
        line, = by_iter.plot([r['iter'] for r in records], [r[key] for r in records], marker='.', label=f'{name} val')
        if not bpb:  # the steps' training loss is logged in nats only
            steps = read_log(d, steps=True)
            by_iter.plot([r['iter'] for r in steps], [r['loss'] for r in steps], color=line.get_color(), alpha=0.35,
                         linewidth=0.8, label=f'{name} train (steps)')
        timed = [r for r in records if is_logged_number(r.get('elapsed'))]
        by_time.plot([r['elapsed'] for r in timed], [r[key] for r in timed], color=line.get_color(),
                     marker='.', label=f'{name} val')
    by_iter.set(xlabel='iteration', ylabel=f'loss ({unit})', title='loss')
    by_time.set(xlabel='seconds since the command started', ylabel=f'val loss ({unit})', title='time to loss')
    for ax in (by_iter, by_time):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    import files
    try:
        with files.atomic_write(path) as f:
            fig.savefig(f, format='png')
    except OSError as e:
        why = 'the disk is full' if e.errno == 28 else e.strerror
        raise UserError(f'could not write {path} ({why})') from None
    finally:
        plt.close(fig)
    return path, unit


def plot_summary(out_dir):
    """For train.py's closing summary: where the plot went, or in a few words why it did not. It
    never raises: the run's work is saved by then, and a picture is not worth a traceback."""
    try:
        return plot_losses(out_dir)[0]
    except Exception as e:  # a UserError, or a fault of matplotlib's
        why = e if isinstance(e, UserError) else f'{type(e).__name__}: {e}'
        return f'not drawn ({why}); python plot.py {out_dir} draws them later'


def main(argv):
    parser = ArgumentParser(prog='python plot.py', description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('out_dirs', nargs='+', metavar='OUT_DIR', help='the out_dir of one or more train.py runs')
    parser.add_argument('--out', help='the PNG to write (one run: OUT_DIR/loss.png; several: loss-compare.png)')
    args = parser.parse_args(argv)
    path, unit = plot_losses(*args.out_dirs, path=args.out)
    print(f'wrote {path} (loss in {unit}' + (": the runs' tokens differ)" if unit == 'bits per byte' else ')'))


if __name__ == '__main__':
    run_main(main, sys.argv[1:])
