# 16x16 CIFAR-10 as 512-colour palette tokens (image-GPT in miniature) on the CPU:
# ~10-15 min (2500 steps of ~0.25-0.35 s on 2 cores), 0.86M parameters.
# python demos/prepare_image.py --size=16 && python train.py config/train_image.py
# python demos/sample_image.py                 # -> out-image/samples.png
# python demos/sample_image.py --eval=True     # + the val loss in nats per pixel token
out_dir = 'out-image'
eval_interval = 250
eval_iters = 10
log_interval = 25
always_save_checkpoint = False  # save only when val improves

dataset = 'cifar10'  # prepare_image.py --size=16 writes data/cifar10 (vocab 513: 512 colours + start)
gradient_accumulation_steps = 1
batch_size = 16  # images per step: 16 x 256 pixel tokens
block_size = 256  # 16 * 16: one whole image after its start token

n_layer = 4
n_head = 4
n_embd = 128
dropout = 0.0  # under one pass over the 50,000 training images: no overfitting to fight

learning_rate = 1e-3
max_iters = 2500
lr_decay_iters = 2500
min_lr = 1e-4
beta2 = 0.99
warmup_iters = 100
weight_decay = 0.1
