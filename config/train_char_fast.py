# The fastest way here to nanoGPT's CPU-recipe loss (val 1.886 after 2000 steps) on tiny
# Shakespeare: a 2-layer model with Muon, 200 steps, about half a minute on 2 laptop cores.
# python prepare_char.py && python train.py config/train_char_fast.py
out_dir = 'out-char-fast'
eval_interval = 100
eval_iters = 10
log_interval = 20
always_save_checkpoint = False

dataset = 'shakespeare_char'
gradient_accumulation_steps = 1
batch_size = 64
block_size = 64

n_layer = 2
n_head = 4
n_embd = 128
dropout = 0.0

optimizer = 'muon'
muon_lr = 0.04
learning_rate = 6e-3
beta2 = 0.99
max_iters = 200
lr_decay_iters = 200
warmup_iters = 20
min_lr = 2e-4
