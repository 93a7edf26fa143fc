# Where the corpus and the pretrained models live: fill these in (or export
# them). Empty ones stop the stages that need them with a message.

# LRS2: either the release (mvlrs_v1/ with main/ and pretrain/, and the lists
# pretrain.txt train.txt val.txt test.txt beside it or inside) or the output
# of mpc001/auto_avsr preparation/ (labels/ and lrs2/lrs2_video_seg16s/).
LRS2=${LRS2:-}

# Pretrained models (no spaces in the paths):
# a Hugging Face folder of openai/whisper-medium.en (config.json,
# preprocessor_config.json, weights);
WHISPER=${WHISPER:-}
# the official AV-HuBERT Large checkpoint pre-trained on LRS3 + VoxCeleb2
# (fairseq .pt, large_vox_iter5.pt as Llama-AVSR uses; its video path is
# loaded by espnet_mtsk.encoders.avhubert_checkpoint);
AVHUBERT=${AVHUBERT:-}
# a Hugging Face folder of meta-llama/Llama-3.2-1B (config.json, tokenizer, weights).
LLAMA=${LLAMA:-}

# Optional: babble noise (a 16 kHz mono wav, e.g. auto_avsr's
# babble_noise.wav) mixed into training audio on the fly.
BABBLE=${BABBLE:-}
