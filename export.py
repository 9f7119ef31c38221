"""Export a checkpoint of train.py to transformers' GPT-2 format.

    python export.py --out_dir=out-char --to=out-char-hf

writes config.json and model.safetensors as transformers' GPT2LMHeadModel saves them, so that
GPT2LMHeadModel.from_pretrained('out-char-hf') loads the model (and so does model.from_pretrained).
The tokenizer goes beside it: for GPT-2's BPE the files of transformers' GPT2Tokenizer (vocab.json,
merges.txt, tokenizer_config.json, special_tokens_map.json), made from tiktoken's encoding; a
dataset's own vocabulary, for which transformers has no tokenizer, as chars.json ({character: id})
or tiktoken.json (the parts of a tiktoken.Encoding, token bytes in base64).
The folder is written whole or not at all: into a hidden temporary folder beside it, then renamed.
"""
import base64
import json
import math
import os
from dataclasses import asdict

import jax
import numpy as np

import checkpoint
import common
import configurator
import files
import model
import tokenizer
from common import UserError
from model import GPTConfig

# ----------------------------------------------------------------------------- settings
out_dir = 'out'  # the train.py run to export (out_dir/ckpt.pkl)
to = ''  # the folder to write (required): a new or empty folder
force = False  # True: replace a non-empty `to` folder as a whole (what it held is deleted)
# -----------------------------------------------------------------------------
configurator.configure(globals(), quiet=True)

GPT2_VOCAB = tokenizer.GPT2_VOCAB
EOT = '<|endoftext|>'
PREFIX = 'transformer.'  # GPT2LMHeadModel's names for the GPT; its lm_head is wte (tied), not saved
# GPTConfig's fields that GPT2Config can say (bias=False: as zero biases); any other is refused
EXPRESSIBLE = ('block_size', 'vocab_size', 'n_layer', 'n_head', 'n_embd', 'dropout', 'bias')


# ----------------------------------------------------------------------------- the model

def tensors(tree):  # a nested dict of arrays -> {('h', 'attn', 'c_attn', 'weight'): array}
    return {tuple(str(getattr(k, 'key', k)) for k in path): a
            for path, a in jax.tree_util.tree_leaves_with_path(tree)}


def read_checkpoint(run_dir):
    """run_dir/ckpt.pkl -> (its tensors, GPTConfig, the checkpoint), after checking that it is a
    model of train.py (checkpoint.load_run) and that transformers' GPT-2 can express it."""
    ckpt, config = checkpoint.load_run(run_dir)
    where = os.path.join(run_dir, 'ckpt.pkl')
    if unknown := [f'{k}={v!r}' for k, v in ckpt['model_args'].items() if k not in EXPRESSIBLE]:
        raise UserError(f"{where}: transformers' GPT-2 cannot express the model's {', '.join(unknown)}")
    return tensors(ckpt['params']), config, ckpt


def gpt2_tensors(params, config, vocab_size):
    """Our tensors -> {transformers' name: float32 array}: the stacked layers unstacked into h.0,
    h.1, ..., zero biases where the model has none (transformers' GPT-2 always has them), and the
    token embedding cut to vocab_size rows. The inverse of model.from_pretrained."""
    with_biases = GPTConfig(**{**asdict(config), 'bias': True})
    out = {}
    for key, spec in tensors(jax.eval_shape(lambda: model.init_params(with_biases, jax.random.key(0)))).items():
        a = np.asarray(params[key], np.float32) if key in params else np.zeros(spec.shape, np.float32)
        if key == ('wte',):
            a = a[:vocab_size]
        if key[0] == 'h':  # [L, ...] -> h.{i}.<rest>, each [...]: Conv1D's (in, out) layout as ours
            for i in range(config.n_layer):
                out[PREFIX + model.gpt2_tensor_name(key, i)] = np.ascontiguousarray(a[i])
        else:
            out[PREFIX + model.gpt2_tensor_name(key)] = np.ascontiguousarray(a)
    return out


def gpt2_config(config, vocab_size, eot_id):
    """transformers' GPT2Config for the model, with every field transformers writes."""
    return {
        'activation_function': 'gelu_new',  # the tanh approximation, as model.gelu
        'add_cross_attention': False,
        'architectures': ['GPT2LMHeadModel'],
        'attn_pdrop': config.dropout,  # our dropout goes where GPT-2's three go
        'bos_token_id': eot_id,
        'dtype': 'float32',
        'embd_pdrop': config.dropout,
        'eos_token_id': eot_id,
        'initializer_range': 0.02,
        'layer_norm_epsilon': 1e-5,  # as model.layer_norm
        'model_type': 'gpt2',
        'n_embd': config.n_embd,
        'n_head': config.n_head,
        'n_inner': None,  # 4 * n_embd
        'n_layer': config.n_layer,
        'n_positions': config.block_size,
        'pad_token_id': None,
        'reorder_and_upcast_attn': False,
        'resid_pdrop': config.dropout,
        'scale_attn_by_inverse_layer_idx': False,
        'scale_attn_weights': True,
        'summary_activation': None,  # the summary_* fields are for GPT2DoubleHeadsModel: its defaults
        'summary_first_dropout': 0.1,
        'summary_proj_to_labels': True,
        'summary_type': 'cls_index',
        'summary_use_proj': True,
        'tie_word_embeddings': True,  # the output head is wte
        'use_cache': True,
        'vocab_size': vocab_size,
    }


# ----------------------------------------------------------------------------- the tokenizer

def byte_to_unicode():
    """GPT-2's map of the 256 byte values to printable characters, in which vocab.json and
    merges.txt write tokens: printable Latin-1 bytes stand for themselves, the other 68 (control
    characters, the space, ...) for the characters from chr(256) on."""
    printable = [*range(ord('!'), ord('~') + 1), *range(ord('¡'), ord('¬') + 1), *range(ord('®'), ord('ÿ') + 1)]
    others = [b for b in range(256) if b not in printable]
    return {**{b: chr(b) for b in printable}, **{b: chr(256 + i) for i, b in enumerate(others)}}


def bpe_merges(ranks):
    """A byte-level BPE's merge rules from tiktoken's ranks ({token bytes: rank}), in rank order:
    for each token of two or more bytes, the two tokens that BPE joins into it, found by running
    BPE on the token's own bytes with only the rules ranked before it. (For GPT-2 these are
    exactly the lines of its original merges file.)"""
    merges = []
    for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
        parts = [bytes([b]) for b in token]
        while len(parts) > 2:  # merge the best-ranked neighbours, as BPE does
            pair_ranks = [ranks.get(a + b, math.inf) for a, b in zip(parts, parts[1:])]
            i = min(range(len(pair_ranks)), key=pair_ranks.__getitem__)
            if pair_ranks[i] >= rank:
                break
            parts[i:i + 2] = [parts[i] + parts[i + 1]]
        if len(parts) == 2:
            merges.append(parts)
    return merges


def gpt2_tokenizer_files(block_size):
    """{file name: text} for transformers' GPT2Tokenizer (and GPT2TokenizerFast), made from
    tiktoken's GPT-2 encoding: vocab.json {token: id}, merges.txt, and the special token."""
    enc = tokenizer.gpt2_encoding()
    if enc.n_vocab != GPT2_VOCAB:
        raise UserError(f"tiktoken's GPT-2 encoding has {enc.n_vocab} tokens, not {GPT2_VOCAB}")
    chars = byte_to_unicode()
    text = lambda token: ''.join(chars[b] for b in token)
    ids = {enc.decode_single_token_bytes(i): i for i in range(enc.n_vocab)}  # <|endoftext|> as its text
    merges = bpe_merges({token: i for token, i in ids.items() if i != enc.eot_token})
    specials = {'bos_token': EOT, 'eos_token': EOT, 'unk_token': EOT}
    return {
        'vocab.json': json.dumps({text(token): i for token, i in ids.items()}, ensure_ascii=False),
        'merges.txt': '#version: 0.2\n' + ''.join(f'{text(a)} {text(b)}\n' for a, b in merges),
        'tokenizer_config.json': json.dumps({'tokenizer_class': 'GPT2Tokenizer', 'model_max_length': block_size,
                                             'add_prefix_space': False, **specials}, indent=2),
        'special_tokens_map.json': json.dumps(specials, indent=2),
    }


def own_bpe(parts):
    """A dataset's own BPE, the parts of a tiktoken.Encoding, as JSON can hold it (token bytes in base64)."""
    try:
        ranks = {base64.b64encode(token).decode('ascii'): int(r) for token, r in parts['mergeable_ranks'].items()}
        specials = {str(s): int(i) for s, i in parts['special_tokens'].items()}
        return {'pat_str': str(parts['pat_str']), 'mergeable_ranks': ranks, 'special_tokens': specials}
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise UserError(f'the checkpoint holds a tokenizer that is not a tiktoken encoding '
                        f'({type(e).__name__}: {e})') from None


def vocabulary_files(vocab, config, where):
    """The checkpoint's record of its dataset's vocabulary -> (the vocab_size to export, the id of
    <|endoftext|> or None, {file name: text}, what those files are). `where` names the checkpoint."""
    if vocab is None:  # an older train.py recorded none: GPT-2's BPE if the size says so
        if config.vocab_size not in (GPT2_VOCAB, tokenizer.GPT2_PADDED_VOCAB):
            return config.vocab_size, None, {}, 'no tokenizer: the checkpoint records no vocabulary (older train.py)'
        vocab = {'tokenizer': 'gpt2'}
    if not isinstance(vocab, dict):
        raise UserError(f'{where} records its vocabulary as a {type(vocab).__name__}, not as train.py does')
    if 'stoi' in vocab or 'itos' in vocab:  # characters
        stoi = tokenizer.character_ids(vocab, where)
        what = f'chars.json: the vocabulary of {len(stoi)} characters, {{character: id}}'
        return config.vocab_size, None, {'chars.json': json.dumps(stoi, ensure_ascii=False)}, what
    if 'vocab_size' in vocab and vocab.get('tokenizer', 'gpt2') != 'gpt2':  # the dataset's own BPE
        own = own_bpe(vocab['tokenizer'])
        what = f"tiktoken.json: the dataset's own BPE of {vocab['vocab_size']:,} tokens (a tiktoken.Encoding's parts)"
        return config.vocab_size, own['special_tokens'].get(EOT), {'tiktoken.json': json.dumps(own, ensure_ascii=False)}, what
    if config.vocab_size < GPT2_VOCAB:  # GPT-2's BPE
        raise UserError(f"the model has {config.vocab_size} token rows, fewer than GPT-2 BPE's {GPT2_VOCAB}")
    what = "vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json: GPT-2's BPE for GPT2Tokenizer"
    return GPT2_VOCAB, GPT2_VOCAB - 1, gpt2_tokenizer_files(config.block_size), what


# ----------------------------------------------------------------------------- export

def main():
    if not to:
        raise UserError('give the folder to write: --to=DIR (for example --to=out-char-hf)')
    run_dir = common.find(out_dir)
    params, config, ckpt = read_checkpoint(run_dir)
    dest = os.path.abspath(to)
    if os.path.exists(dest) and not os.path.isdir(dest):
        raise UserError(f'{to} is a file, not a folder: choose another --to')
    if os.path.isdir(dest) and os.listdir(dest):
        if not force:
            raise UserError(f'{to} is not empty: choose another --to, or replace that folder as a whole '
                            f'with --force=True')
        for what, inside in [('the checkpoint to export', os.path.join(run_dir, 'ckpt.pkl')),
                             ('the current directory', '.')]:
            if os.path.commonpath([dest, os.path.abspath(inside)]) == dest:
                raise UserError(f'{to} holds {what}: --force=True would delete it; choose another --to')
    vocab_size, eot_id, vocab_files, what = vocabulary_files(ckpt.get('tokenizer'), config,
                                                             os.path.join(run_dir, 'ckpt.pkl'))
    weights = gpt2_tensors(params, config, vocab_size)

    from safetensors.numpy import save_file  # only needed here
    try:
        with files.atomic_folder(dest, replace=force) as tmp:
            with open(os.path.join(tmp, 'config.json'), 'w') as f:
                json.dump(gpt2_config(config, vocab_size, eot_id), f, indent=2)
            # transformers reads only files whose metadata names a framework; 'pt' as it writes them
            save_file(weights, os.path.join(tmp, 'model.safetensors'), metadata={'format': 'pt'})
            files.give_usual_permissions(os.path.join(tmp, 'model.safetensors'))  # as config.json's, not 0600
            for name, text in vocab_files.items():
                with open(os.path.join(tmp, name), 'w', encoding='utf-8') as f:
                    f.write(text)
    except OSError as e:
        raise UserError(f'could not write {to} ({e.strerror or e}); it is as it was') from None

    n = sum(a.size for a in weights.values())
    at = f' (iter {ckpt["iter_num"]})' if 'iter_num' in ckpt else ''
    print(f'exported {os.path.join(out_dir, "ckpt.pkl")}{at} to {to}:')
    print(f'  config.json, model.safetensors: GPT-2 with {config.n_layer} layers, {config.n_head} heads, '
          f'{config.n_embd} dims, {config.block_size} positions, {vocab_size:,} tokens, {n / 1e6:.2f}M parameters')
    print(f'  {what}')
    if config.vocab_size != vocab_size:
        print(f'note: the token embedding is cut from {config.vocab_size:,} rows (padded for speed) to the '
              f'{vocab_size:,} tokens of GPT-2 BPE')
    if not config.bias:
        print("note: the model has no biases (bias=False); transformers' GPT-2 always has them, so they are "
              "written as zeros: the same model")
    print(f"load it: transformers.GPT2LMHeadModel.from_pretrained('{to}')")


common.run_main(main)
