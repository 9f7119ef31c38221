"""Loss curves of training runs, from their log.jsonl, as a PNG (needs matplotlib).

    python plot.py out-char                      # -> out-char/loss.png
    python plot.py out-adamw out-muon --out=compare.png

Left: val loss at each evaluation and the training loss of the logged steps, against iterations;
right: val loss against the wall time since the command started (what time to a good model means). train.py writes out_dir/loss.png itself at the
end of a run when matplotlib is installed (pip install matplotlib).
"""
import json
import os
import sys


def read_log(out_dir, steps=False):
    """The evaluation records of out_dir/log.jsonl (the latest run's, if several runs wrote it);
    steps=True: the records of the logged training steps instead."""
    records = []
    with open(os.path.join(out_dir, 'log.jsonl')) as f:
        for line in f:
            try:
                r = json.loads(line)
            except ValueError:  # a line cut short by a crash
                continue
            if r.get('iter') == 0 and 'val_loss' in r:
                records = []  # a new run from scratch starts a new curve
            if ('loss' if steps else 'val_loss') in r:
                records.append(r)
    return records


def plot_losses(*out_dirs, path=None):
    """Draw the loss curves of the runs in out_dirs into path (default: the first run's
    loss.png) and return the path; None without matplotlib or without evaluations."""
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    runs = {d: read_log(d) for d in out_dirs}
    if not any(runs.values()):
        return None
    path = path or os.path.join(out_dirs[0], 'loss.png')
    fig, (by_iter, by_time) = plt.subplots(1, 2, figsize=(10, 3.6), dpi=80)
    for d, records in runs.items():
        name = os.path.basename(os.path.normpath(d))
        iters = [r['iter'] for r in records]
        line, = by_iter.plot(iters, [r['val_loss'] for r in records], marker='.', label=f'{name} val')
        steps = read_log(d, steps=True)
        by_iter.plot([r['iter'] for r in steps], [r['loss'] for r in steps], color=line.get_color(), alpha=0.35,
                     linewidth=0.8, label=f'{name} train (steps)')
        timed = [r for r in records if 'elapsed' in r]
        by_time.plot([r['elapsed'] for r in timed], [r['val_loss'] for r in timed], color=line.get_color(),
                     marker='.', label=f'{name} val')
    by_iter.set(xlabel='iteration', ylabel='loss (nats per token)', title='loss')
    by_time.set(xlabel='seconds since the command started', ylabel='val loss', title='time to loss')
    for ax in (by_iter, by_time):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)), '.' + os.path.basename(path) + '.tmp')
    fig.savefig(tmp, format='png')
    plt.close(fig)
    os.replace(tmp, path)
    return path


def main(argv):
    out = next((a.split('=', 1)[1] for a in argv if a.startswith('--out=')), None)
    dirs = [a for a in argv if not a.startswith('--')]
    if not dirs or '-h' in argv or '--help' in argv:
        print(__doc__.strip())
        return 0 if dirs or '-h' in argv or '--help' in argv else 1
    for d in dirs:
        if not os.path.isfile(os.path.join(d, 'log.jsonl')):
            print(f'error: {d}/log.jsonl not found: give the out_dir of a train.py run', file=sys.stderr)
            return 1
    path = plot_losses(*dirs, path=out)
    if path is None:
        print('error: plotting needs matplotlib (pip install matplotlib), and the runs need at least one '
              'evaluation', file=sys.stderr)
        return 1
    print(f'wrote {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
