# Character-level tiny Shakespeare on the CPU: the main job, a few minutes on a laptop.
# python prepare_char.py && python train.py config/train_char.py
out_dir = 'out-char'
eval_interval = 250
eval_iters = 20
log_interval = 50
always_save_checkpoint = False  # only save when val improves (small data: it will overfit)

dataset = 'shakespeare_char'
gradient_accumulation_steps = 1
batch_size = 32
block_size = 128

n_layer = 4
n_head = 4
n_embd = 192
dropout = 0.0

learning_rate = 2e-3
max_iters = 1500
lr_decay_iters = 1500
min_lr = 2e-4
beta2 = 0.99
warmup_iters = 100
weight_decay = 0.1
