"""The lesson's RAG batch step (its wattbot_rag_batch.py), written for the test: each question of
train_QA.csv embedded with the same model, its top-k chunks retrieved by cosine similarity, and
one answer row per question in wattbot_solutions.csv. The lesson generates the answer text with
an LLM; here the answer is the best chunk's text (no LLM to download)."""

import argparse
import json
import os

import numpy as np
import pandas as pd
from sentence_transformers import SentenceTransformer

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--input_dir", default="/opt/ml/processing/input")
    parser.add_argument("--output_dir", default="/opt/ml/processing/output")
    parser.add_argument("--embedding_model_id", required=True)
    parser.add_argument("--top_k", type=int, default=8)
    args = parser.parse_args()

    with open(os.path.join(args.input_dir, "chunks", "chunks.jsonl"), encoding="utf-8") as f:
        chunks = [json.loads(line) for line in f if line.strip()]
    embeddings = np.load(os.path.join(args.input_dir, "embeddings", "embeddings.npy"))
    questions = pd.read_csv(os.path.join(args.input_dir, "train", "train_QA.csv"))
    metadata = pd.read_csv(os.path.join(args.input_dir, "metadata", "metadata.csv"))
    known = set(metadata["id"])
    model = SentenceTransformer(args.embedding_model_id)
    asked = model.encode(list(questions["question"]), convert_to_numpy=True, normalize_embeddings=True)
    rows = []
    for (_, question), vector in zip(questions.iterrows(), asked, strict=True):
        top = np.argsort(-(embeddings @ vector))[: args.top_k]
        refs = [chunks[i]["doc_id"] for i in top if chunks[i]["doc_id"] in known]
        best = chunks[int(top[0])]
        rows.append(
            {"id": question["id"], "answer_value": best["text"], "ref_id": ";".join(dict.fromkeys(refs))}
        )
    os.makedirs(args.output_dir, exist_ok=True)
    pd.DataFrame(rows).to_csv(os.path.join(args.output_dir, "wattbot_solutions.csv"), index=False)
    print(f"Answered {len(rows)} questions")
