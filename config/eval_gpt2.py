# Evaluate OpenAI's gpt2 (124M parameters) on OpenWebText: nanoGPT's baseline table.
# python prepare_owt.py && python train.py config/eval_gpt2.py
batch_size = 8
eval_iters = 500  # use more iterations to get a good estimate
eval_only = True
wandb_log = False
init_from = 'gpt2'
