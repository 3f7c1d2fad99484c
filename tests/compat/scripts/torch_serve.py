"""A PyTorch script-mode training script that saves TorchScript: served by the default handlers."""

import argparse
import os

if __name__ == "__main__":
    import torch

    parser = argparse.ArgumentParser()
    parser.add_argument("--model-dir", default=os.environ.get("SM_MODEL_DIR"))
    args = parser.parse_args()
    torch.manual_seed(0)
    x = torch.randn(256, 3)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.25
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(300):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
    print(f"loss={loss.item():.6f}")
    torch.jit.script(model).save(os.path.join(args.model_dir, "model.pt"))
