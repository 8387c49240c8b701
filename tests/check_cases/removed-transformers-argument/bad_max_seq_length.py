from trl import SFTConfig

config = SFTConfig(output_dir="out", max_seq_length=1024)  # expect: R-USE-LIBRARY
