# 2-digit addition (minGPT's adder) on the CPU: about a minute to 100% on the held-out pairs.
# python demos/prepare_addition.py && python train.py config/train_addition.py && python demos/eval_addition.py
# 3 digits (1M pairs), the same model trained twice as long, ~4 minutes:
#   python demos/prepare_addition.py --digits=3 --out_dir=data/addition3
#   python train.py config/train_addition.py --dataset=addition3 --block_size=9 \
#       --out_dir=out-addition3 --max_iters=2000 --lr_decay_iters=2000
#   python demos/eval_addition.py --out_dir=out-addition3
out_dir = 'out-addition'
eval_interval = 250
eval_iters = 4  # 4 batches of 256 random examples: the 500 held-out pairs, about twice over
log_interval = 50
always_save_checkpoint = False  # save only when val improves

dataset = 'addition'
gradient_accumulation_steps = 1
batch_size = 256
block_size = 6  # example_len - 1: a + b (4 digits) + the 3 sum digits, less the last

n_layer = 2
n_head = 4
n_embd = 128  # ~0.4M parameters, as minGPT's adder
dropout = 0.0

learning_rate = 1e-3
max_iters = 1000
lr_decay_iters = 1000
min_lr = 1e-4
beta2 = 0.99
warmup_iters = 100
weight_decay = 0.1
