"""lora-harness: one config, one command, an honest verdict on whether LoRA fine-tuning helped."""

__version__ = "0.1.0"

import warnings as _warnings

# PEFT (0.21) still asks transformers (5.x) for a deprecated property on every get_peft_model/load_adapter;
# the warning is about their interplay, not about anything a user can change, so keep it off user output.
_warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
