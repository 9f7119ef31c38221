# GPT-2 (124M) on OpenWebText, nanoGPT's recipe: ~491,520 tokens per step, target val ~2.85.
# python prepare_owt.py && python train.py config/train_gpt2.py
# nanoGPT: batch 12 x block 1024 x 40 accumulation steps (5 per GPU on 8 GPUs).
# Here batch_size is per device, so the same 491,520 tokens per step come from
# batch_size 12 x 8 devices x 5 steps, or 12 x 16 devices (2 hosts) x 5 steps with
# --gradient_accumulation_steps=... adjusted: batch_size x devices x steps x 1024.
out_dir = 'out-gpt2'
wandb_log = False
wandb_project = 'owt'
wandb_run_name = 'gpt2-124M'

dataset = 'openwebtext'
batch_size = 12
block_size = 1024
gradient_accumulation_steps = 5  # x 8 devices = 40, as nanoGPT

max_iters = 600000
lr_decay_iters = 600000
learning_rate = 6e-4
min_lr = 6e-5
warmup_iters = 2000
weight_decay = 1e-1

eval_interval = 1000
eval_iters = 200
log_interval = 10
dtype = 'auto'  # bfloat16 on GPUs
