# Character-level tiny Shakespeare on the CPU: the main job, about 3 minutes on 2 laptop cores.
# python prepare_char.py && python train.py config/train_char.py
# Tuned for the time to a good model on a 2-core CPU: a small model (3 layers, 128 dims) that
# steps fast, trained with Muon (optimizer='muon': half the steps of AdamW to the same loss).
out_dir = 'out-char'
eval_interval = 200
eval_iters = 20
log_interval = 50
always_save_checkpoint = False  # only save when val improves (small data: it will overfit)

dataset = 'shakespeare_char'
gradient_accumulation_steps = 1
batch_size = 32
block_size = 128

n_layer = 3
n_head = 4
n_embd = 128
dropout = 0.0

optimizer = 'muon'
muon_lr = 0.04  # the blocks' matrices
muon_weight_decay = 0.05
learning_rate = 6e-3  # AdamW's, for the embeddings, biases and LayerNorms
weight_decay = 0.1
beta2 = 0.99
max_iters = 1200
lr_decay_iters = 1200
warmup_iters = 30
min_lr = 2e-4  # the schedule ends at min_lr / learning_rate = 1/30 of each peak
ema_decay = 0.99  # evaluate and save an average of the recent weights: a good model sooner (see README)
