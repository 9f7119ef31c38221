# Character-level tiny Shakespeare: the best model 15 minutes on 2 laptop cores can train
# (nanoGPT's baby GPT reaches val 1.4697 on an A100; this gets below it on the CPU).
# python prepare_char.py && python train.py config/train_char_best.py
# The main job's recipe (Muon, batch 32 x 128 characters) on a model sized for the budget
# (4 layers, 192 dims), with more weight decay against overfitting 1 MB of text and an
# average of recent weights evaluated and saved (ema_decay). README: Performance has its curve
# and what each change bought.
out_dir = 'out-char-best'
eval_interval = 300
eval_iters = 20
log_interval = 100
always_save_checkpoint = False  # only save when val improves

dataset = 'shakespeare_char'
gradient_accumulation_steps = 1
batch_size = 32
block_size = 128

n_layer = 4
n_head = 6
n_embd = 192
dropout = 0.0  # measured: dropout's random bits cost more time on 2 cores than its regularization buys

optimizer = 'muon'
muon_lr = 0.04
muon_weight_decay = 0.2
learning_rate = 6e-3  # AdamW's, for the embeddings, biases and LayerNorms
weight_decay = 0.1
beta2 = 0.99
max_iters = 3400
lr_decay_iters = 3400
warmup_iters = 30
min_lr = 2e-4
ema_decay = 0.995  # evaluate and save the weights' moving average: it smooths Muon's large steps
