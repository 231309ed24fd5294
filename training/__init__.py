"""GAN training: data, networks, losses, the training loop, and evaluation."""
