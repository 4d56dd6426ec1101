"""A small log-mel CNN audio teacher for the embedded demo (a stand-in for PANNs Cnn14).

Same front end as PANNs (32 kHz, 1024/320, 64 mel bins), four conv blocks, mean over
frequency then max + mean over time, ``fc1`` + layer norm + ReLU as the embedding, and a
classifier over the pre-training corpus's sound events. ``extract-audio --variant small``
writes its embeddings in exactly the layout of the PANNs ones.

Why the (parameter-free) layer norm before the ReLU: it fixes the embedding's scale by
construction, whatever the soundtrack. The 512 units of each embedding are standardised
(mean 0, variance 1) before the ReLU, so the non-negative embedding keeps about half of a
squared norm of 512: an L2 norm near sqrt(512 / 2) = 16 (never above sqrt(512) = 22.6),
where the real PANNs Cnn14_emb512 embeddings of UCF51 lie (L2 norm 13-25, median 15.6, in
the reference's released archive). Without it (``ReLU(fc1(x))``) the demo teacher's
embeddings have norms of about 43, and CCL's audio head (which adds the un-normalised
teacher feature to its residual) starts with a cross-entropy near 45; a batch norm in its
place gives norms of 11-37 on the videos (median 25), whose soundtracks are longer and
noisier than the 1-s corpus clips its statistics come from.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ccl.checkpoint import load_weights
from ccl.models.panns import Cnn14Output, LogMelFrontEnd

KIND = "ccl-small-audio-cnn"


class SmallAudioCNN(nn.Module):
    def __init__(
        self,
        num_classes: int,
        embedding_dim: int = 512,
        channels: tuple[int, ...] = (16, 32, 64, 128),
    ) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.num_classes = num_classes
        self.frontend = LogMelFrontEnd()
        self.frontend.requires_grad_(False)
        self.bn0 = nn.BatchNorm2d(self.frontend.mel_bins)
        blocks, c_in = [], 1
        for c in channels:
            blocks += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU()]
            c_in = c
        self.convs = nn.ModuleList(blocks)
        self.fc1 = nn.Linear(c_in, embedding_dim)
        self.norm_embedding = nn.LayerNorm(embedding_dim, elementwise_affine=False)
        self.fc_out = nn.Linear(embedding_dim, num_classes)

    def embed_logmel(self, logmel: torch.Tensor) -> torch.Tensor:
        """(B, 1, frames, mel) -> (B, embedding_dim) non-negative embedding."""
        x = self.bn0(logmel.transpose(1, 3)).transpose(1, 3)
        for i in range(0, len(self.convs), 3):
            x = self.convs[i + 2](self.convs[i + 1](self.convs[i](x)))
            if x.shape[2] > 1 and x.shape[3] > 1:
                x = F.avg_pool2d(x, 2)
        x = x.mean(dim=3)
        x = x.max(dim=2).values + x.mean(dim=2)
        return F.relu(self.norm_embedding(self.fc1(x)))

    def forward(self, waveform: torch.Tensor) -> Cnn14Output:
        embedding = self.embed_logmel(self.frontend(waveform))
        return Cnn14Output(clipwise=self.fc_out(embedding), embedding=embedding)


def save_small_audio_teacher(model: SmallAudioCNN, path: str | Path, meta: dict) -> None:
    from ccl.checkpoint import save_checkpoint

    state = {k: v for k, v in model.state_dict().items() if not k.startswith("frontend.")}
    save_checkpoint(
        {
            "kind": KIND,
            "model": state,
            "num_classes": model.num_classes,
            "embedding_dim": model.embedding_dim,
            "meta": meta,
        },
        path,
    )


def load_small_audio_teacher(path: str | Path) -> SmallAudioCNN:
    """Load a checkpoint written by ``ccl pretrain-teacher --modality audio``; frozen, eval."""
    path = Path(path)
    state = load_weights(
        path,
        what="audio teacher checkpoint",
        hint=" (train one with `ccl pretrain-teacher --modality audio`)",
    )
    if not isinstance(state, dict) or state.get("kind") != KIND:
        raise ValueError(f"{path} is not a {KIND} checkpoint")
    model = SmallAudioCNN(int(state["num_classes"]), int(state["embedding_dim"]))
    missing, unexpected = model.load_state_dict(state["model"], strict=False)
    missing = [k for k in missing if not k.startswith("frontend.")]
    if missing or unexpected:
        raise ValueError(f"{path}: missing keys {missing[:5]}, unexpected keys {unexpected[:5]}")
    model.requires_grad_(False)
    return model.eval()
