"""HellaSwag (Zellers et al., 2019): which of 4 endings continues a context, scored as llm.c's
dev/data/hellaswag.py scores it ("completion style").

Each example is a context `ctx`, 4 `endings` and the index of the right one, `label`. The model
reads the context's tokens followed by those of " " + ending, and each ending gets the
cross-entropy of its own tokens given everything before them: summed (acc: the lowest sum wins)
and averaged over its tokens (acc_norm: the lowest mean wins, so a long ending is not penalized
for its length). A context and ending longer than the model's block_size keep their last
block_size + 1 tokens: the context loses its start; an ending longer than block_size (a small
character model) is scored on its last block_size tokens only.

Fast: the 4 * N rows are padded to a few lengths (32, 64, 128, ... up to block_size), their
endings to a few too, and run in batches of a fixed number of rows for each pair of lengths, so the
scorer compiles a handful of times, not once per example.

    python hellaswag.py      # only download the validation set into data/hellaswag

eval_hellaswag.py scores a model and prints acc and acc_norm; train.py --hellaswag_examples=N
adds acc_norm on the first N examples to each evaluation (evaluator() below).
"""
import json
import os
import sys
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

import common
import files
import model
from common import UserError

# the validation set from the dataset's own repository: 10,042 examples
VAL_URL = 'https://raw.githubusercontent.com/rowanz/hellaswag/master/data/hellaswag_val.jsonl'
FORMAT = 'each line one JSON object with ctx (text), endings (4 texts) and label (0-3), as HellaSwag\'s .jsonl files'


# ----------------------------------------------------------------------------- the examples

@dataclass
class Example:
    line: int  # in its file, from 1
    ctx: str
    endings: list  # 4 texts
    label: int  # the index of the right ending
    ind: object = None  # HellaSwag's own id of the example, when the file has one


def val_path():
    """Where the validation set is kept: data/hellaswag/hellaswag_val.jsonl (the project's data/
    when run from elsewhere, as every script finds it)."""
    return common.find(os.path.join('data', 'hellaswag', 'hellaswag_val.jsonl'))


def fetch_val(url=VAL_URL, download=True):
    """The path of the validation set, downloaded once (resumable, and complete or absent)."""
    path = val_path()
    if os.path.exists(path):
        return path
    if not download:
        raise UserError(f'{path} not found, and a run of several processes does not download it: download it '
                        f'first with python hellaswag.py')
    print(f'downloading {url}', file=sys.stderr)
    try:
        files.download(url, path)
    except UserError as e:
        raise UserError(f'{e}, or pass --input=FILE with a local copy of hellaswag_val.jsonl') from None
    return path


def load_examples(path, max_examples=0):
    """The examples of a HellaSwag .jsonl file (its first max_examples; 0: all), each checked:
    a problem raises UserError naming the line and what it must hold."""
    try:
        with open(path, encoding='utf-8') as f:
            lines, count = [], 0
            for line in f:
                lines.append(line)
                count += bool(line.strip())
                if count == max_examples:
                    break
    except FileNotFoundError:
        raise UserError(f'{path} not found: pass --input=FILE with a HellaSwag .jsonl file') from None
    except IsADirectoryError:
        raise UserError(f'{path} is a folder: pass --input=FILE with a HellaSwag .jsonl file') from None
    except UnicodeDecodeError as e:
        raise UserError(f'{path} is not UTF-8 text (bad byte at offset {e.start}): {FORMAT}') from None
    except OSError as e:
        raise UserError(f'cannot read {path} ({e.strerror}): pass --input=FILE with a readable .jsonl file') from None
    examples = [check_example(text, path, n) for n, text in enumerate(lines, 1) if text.strip()]
    if not examples:
        raise UserError(f'{path} holds no examples: {FORMAT}')
    return examples


def check_example(text, path, n):
    where = f'{path} line {n}'
    try:
        e = json.loads(text)
    except ValueError as err:
        raise UserError(f'{where} is not JSON ({err}): {FORMAT}') from None
    if not isinstance(e, dict):
        raise UserError(f'{where} is a JSON {type(e).__name__}, not an object: {FORMAT}')
    missing = [k for k in ('ctx', 'endings', 'label') if k not in e]
    if missing:
        test_split = ' (HellaSwag\'s test split has no labels: use the validation set)' if missing == ['label'] else ''
        raise UserError(f'{where} has no {" and no ".join(missing)}{test_split}: {FORMAT}')
    if not (isinstance(e['ctx'], str) and e['ctx']):
        raise UserError(f'{where}: ctx must be a text of at least one character, not {e["ctx"]!r}')
    endings = e['endings']
    if not (isinstance(endings, list) and len(endings) == 4 and all(isinstance(s, str) for s in endings)):
        raise UserError(f'{where}: endings must be a list of 4 texts, not {json.dumps(endings)[:80]}')
    if type(e['label']) is not int or not 0 <= e['label'] < 4:
        raise UserError(f'{where}: label must be 0, 1, 2 or 3 (the index of the right ending), not {e["label"]!r}')
    return Example(n, e['ctx'], endings, e['label'], e.get('ind'))


# ----------------------------------------------------------------------------- tokens

@dataclass
class Rows:
    """The 4 rows of each example (example-major): its tokens, context then ending, cut to their
    last block_size + 1, and how many of the last ones are the ending's, to be scored."""
    tokens: list  # int32 arrays of 2 .. block_size + 1 tokens
    scored: np.ndarray  # int64 [4 * N]
    cut_endings: int  # endings longer than block_size: only their last block_size tokens are scored


def tokenize(examples, tok, config, where, fix):
    """The rows of the examples with the model's tokenizer (llm.c's: ctx and " " + ending encoded
    apart). A character vocabulary that lacks characters of the examples, or token ids past the
    model's vocabulary, raise one UserError that ends with `fix`."""
    tokens, scored, cut = [], [], 0
    for e in examples:
        try:
            ctx = tok.encode(e.ctx)
            endings = [tok.encode(' ' + ending) for ending in e.endings]
        except UserError as error:  # a character vocabulary: say all that it lacks at once
            raise UserError(unknown_characters(examples, tok, where, fix) or error) from None
        for ending in endings:
            row = np.array(ctx + ending, np.int32)[-(config.block_size + 1):]
            cut += len(ending) > config.block_size
            tokens.append(row)
            scored.append(min(len(ending), config.block_size))
    top = max(int(row.max()) for row in tokens)
    if top >= config.vocab_size:  # a GPT-2 folder with a cut-down vocabulary
        raise UserError(f'{where} has token {top} with {tok.what}, past the model\'s vocabulary of '
                        f'{config.vocab_size} tokens: {fix}')
    return Rows(tokens, np.array(scored, np.int64), cut)


def unknown_characters(examples, tok, where, fix):
    """The message for a character vocabulary that cannot write the examples: all the characters
    it lacks, how many examples have them and the first of those."""
    def writable(c):
        try:
            tok.encode(c)
            return True
        except UserError:
            return False
    texts = [e.ctx + ' ' + ' '.join(e.endings) for e in examples]
    lacking = sorted(c for c in set(''.join(texts)) if not writable(c))
    if not lacking:
        return None
    bad = [e for e, text in zip(examples, texts) if any(c in lacking for c in set(text))]
    return (f'{len(bad):,} of the {len(examples):,} examples of {where} (the first at line {bad[0].line}) have '
            f'characters that the model\'s {tok.what} lacks: {"".join(lacking)!r}; {fix}')


# ----------------------------------------------------------------------------- scoring

BATCH_TOKENS = 8192  # a batch's rows hold at most this many tokens
LOGITS_BYTES = 1 << 29  # and its float32 logits (of the endings' tokens) at most 512 MB


def bucket_lengths(block_size, shortest=32):
    """The lengths rows are padded to: 32, 64, 128, ... below block_size, and block_size."""
    lengths, T = [], shortest
    while T < block_size:
        lengths.append(T)
        T *= 2
    return lengths + [block_size]


def batches(rows, config):
    """(row indices, x, pos, y) for every batch: x int32 [B, T] the rows' inputs (0 after a row's
    end), and of each row's scored tokens pos int32 [B, W] the positions whose logits predict them
    and y int32 [B, W] the tokens (-1: none). T and W (W <= T) are bucket_lengths(): the shortest
    that hold the row and its ending. B is fixed for each (T, W), but for the last batch of each,
    which has the power of two rows that holds the rest (the rows past them empty, index -1)."""
    lengths = np.array(bucket_lengths(config.block_size))
    n = np.array([len(row) - 1 for row in rows.tokens])  # inputs per row
    T_of, W_of = lengths[np.searchsorted(lengths, n)], lengths[np.searchsorted(lengths, rows.scored)]
    for T, W in sorted(set(zip(T_of.tolist(), W_of.tolist())), reverse=True):  # the longest first
        members = np.flatnonzero((T_of == T) & (W_of == W))
        most = max(1, min(BATCH_TOKENS // T, LOGITS_BYTES // (4 * W * config.vocab_size)))
        for start in range(0, len(members), most):
            chunk = members[start:start + most]
            B = min(most, 1 << (len(chunk) - 1).bit_length())
            index = np.concatenate([chunk, np.full(B - len(chunk), -1)])
            x, pos, y = np.zeros((B, T), np.int32), np.zeros((B, W), np.int32), np.full((B, W), -1, np.int32)
            for r, i in enumerate(chunk):
                row, k = rows.tokens[i], rows.scored[i]
                x[r, :n[i]] = row[:-1]
                pos[r, :k] = np.arange(n[i] - k, n[i])
                y[r, :k] = row[-k:]
            yield index, x, pos, y


@partial(jax.jit, static_argnames=('config', 'dtype'))
def ending_nats(params, x, pos, y, config, dtype):
    """Summed cross-entropy (nats) of each row's scored tokens (batches() says what x, pos and y
    are) -> float32 [B]. The output head runs only where an ending's token is predicted: with
    GPT-2's vocabulary it costs as much as the rest of the model at every position."""
    B, T = x.shape
    h = model.hidden_states(params, x, config, dtype).reshape(B, T, -1)  # [B, T, C]
    h = jnp.take_along_axis(h, pos[..., None], axis=1)  # [B, W, C]
    logits = model.head(params, h.reshape(-1, h.shape[-1]), dtype).reshape(*y.shape, -1)  # [B, W, V] float32
    picked = jnp.take_along_axis(logits, jnp.maximum(y, 0)[..., None], axis=-1)[..., 0]  # [B, W]
    nats = jax.nn.logsumexp(logits, axis=-1) - picked
    return jnp.where(y != -1, nats, 0.0).sum(-1)


def score(params, config, rows, dtype=jnp.float32, progress=False):
    """The summed cross-entropy of each ending -> float64 [N, 4]; progress: a bar with the time
    left on stderr."""
    from tqdm import tqdm
    params = jax.tree_util.tree_map(jnp.asarray, params)
    work = list(batches(rows, config))
    sums = np.zeros(len(rows.tokens))
    with tqdm(total=sum(x.size for _, x, _, _ in work), desc='hellaswag', unit='tok', unit_scale=True,
              file=sys.stderr, disable=not progress) as bar:
        for index, x, pos, y in work:
            nats = np.asarray(ending_nats(params, x, pos, y, config, jnp.dtype(dtype)))
            sums[index[index >= 0]] = nats[index >= 0]
            bar.update(x.size)
    return sums.reshape(-1, 4)


@dataclass
class Results:
    sums: np.ndarray  # [N, 4] summed cross-entropy of each ending's tokens
    means: np.ndarray  # [N, 4] the same per token
    pred: np.ndarray  # [N] the ending of the lowest sum (the first of equals)
    pred_norm: np.ndarray  # [N] the ending of the lowest mean
    acc: float  # how often pred is the label
    acc_norm: float  # how often pred_norm is


def results(sums, rows, labels):
    means = sums / rows.scored.reshape(-1, 4)
    pred, pred_norm = sums.argmin(1), means.argmin(1)
    labels = np.asarray(labels)
    return Results(sums, means, pred, pred_norm, float((pred == labels).mean()), float((pred_norm == labels).mean()))


def evaluator(n_examples, config, tok, dtype, download=True):
    """For train.py: the first n_examples of the validation set (downloaded once), tokenized now,
    so that a vocabulary that cannot write them stops the run at its start -> a function of the
    params that returns acc_norm."""
    path = fetch_val(download=download)
    examples = load_examples(path, n_examples)
    rows = tokenize(examples, tok, config, path, 'train on a dataset whose vocabulary covers them (a BPE: '
                    'prepare_owt.py), or leave hellaswag_examples at 0')
    labels = [e.label for e in examples]
    return lambda params: results(score(params, config, rows, dtype), rows, labels).acc_norm


if __name__ == '__main__':
    common.exit_on_ctrl_c()
    common.errors_as_one_line()
    if sys.argv[1:]:
        raise UserError('python hellaswag.py takes no arguments: it downloads the validation set into data/hellaswag')
    path = fetch_val()
    print(f'{path}: {len(load_examples(path)):,} examples')
