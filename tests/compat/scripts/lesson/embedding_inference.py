"""The lesson's embedding step (its embedding_inference.py), written for the test: a JSONL of
chunks in, their normalised sentence-transformers embeddings out as embeddings.npy."""

import argparse
import json
import os

import numpy as np
from sentence_transformers import SentenceTransformer

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--model_id", required=True)
    parser.add_argument("--input_filename", default="chunks.jsonl")
    parser.add_argument("--text_key", default="text")
    parser.add_argument("--input_dir", default="/opt/ml/processing/input")
    parser.add_argument("--output_dir", default="/opt/ml/processing/output")
    args = parser.parse_args()

    with open(os.path.join(args.input_dir, args.input_filename), encoding="utf-8") as f:
        texts = [json.loads(line)[args.text_key] for line in f if line.strip()]
    print(f"Loaded {len(texts)} chunks")
    model = SentenceTransformer(args.model_id)
    embeddings = model.encode(texts, convert_to_numpy=True, normalize_embeddings=True)
    os.makedirs(args.output_dir, exist_ok=True)
    np.save(os.path.join(args.output_dir, "embeddings.npy"), embeddings)
    print(f"Wrote embeddings {embeddings.shape}")
