# Finetune GPT-2 XL on tiny Shakespeare (BPE).
# python prepare_owt.py --input=data/shakespeare_char/input.txt --split=tail --out_dir=data/shakespeare
# python train.py config/finetune_shakespeare.py
out_dir = 'out-shakespeare'
eval_interval = 5
eval_iters = 40
wandb_log = False
wandb_project = 'shakespeare'
wandb_run_name = 'ft'

dataset = 'shakespeare'
init_from = 'gpt2-xl'  # the largest GPT-2

always_save_checkpoint = False  # only save when val improves

# 1 batch x 32 steps x 1024 tokens = 32,768 tokens per iteration; shakespeare has 301,966
batch_size = 1
gradient_accumulation_steps = 32
max_iters = 20

# finetune at a constant, small learning rate
learning_rate = 3e-5
decay_lr = False
