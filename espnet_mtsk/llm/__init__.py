"""The LLM side: prompt layout, loss and decoding (causal_lm), LoRA strategies (lora)."""
