"""The semantic models (U-Net, wide U-Net, UNet++): comparison, head choice, pruning."""
