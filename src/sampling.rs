//! Hugging Face `generate(do_sample=True)` sampling. (Being written: see helper.)
