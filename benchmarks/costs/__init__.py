"""What the models cost: neck FLOPs and time, prediction time by part, tiled big images."""
