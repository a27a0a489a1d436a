"""lora-harness: one config, one command, an honest verdict on whether LoRA fine-tuning helped."""

__version__ = "0.1.0"
