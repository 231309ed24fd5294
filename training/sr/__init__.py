"""Super-resolution training: SRResNet with a pixel loss (stage 1), then SRGAN (stage 2)."""
