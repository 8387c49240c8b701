from trl import GRPOConfig

args = GRPOConfig(output_dir="out", num_generations=4)  # expect: R-REF-FROZEN
