from trl import DPOConfig

args = DPOConfig(output_dir="out", beta=0.0)  # expect: R-REF-FROZEN
