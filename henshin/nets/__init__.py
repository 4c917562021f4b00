"""The torch networks and their official-checkpoint loaders.

StyleGAN2's layers are written once (``layers``) and shared by StyleGAN2 (``stylegan2``),
encoder4editing (``e4e``) and GANs N' Roses (``gnr``); ``multistyle`` and ``fns`` are the
style-transfer networks; ``student`` is the small U-Net ``henshin distill`` trains. Each network module keeps its official release's key mapping in
one function beside the network and loads strictly. Networks import neither filters nor
the engine: weights paths are passed in.
"""
