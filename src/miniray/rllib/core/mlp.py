"""A numpy multi-layer perceptron with hand-written backprop, and the Adam optimizer.

    params: ONE flat float vector ──views──► W0 b0 W1 b1 ... (each layer's weights, no copies)
    forward(x)      h1 = act(x W0 + b0), h2 = act(h1 W1 + b1), ..., out = h_k W_k + b_k
                    keeps each layer's (input, output) on a tape
    backward(dout)  walks the tape backwards: dW = h.T d, db = sum(d), d <- (d W.T) * act'(h)
                    returns ONE flat gradient vector, laid out like params

One flat vector keeps the rest small: the weights broadcast to env runners are one array, Adam and
gradient clipping work on one vector, and a checkpoint is one array.  The last layer is linear (the
logits of a policy, or a value).  tests/test_rllib_core.py checks backward against finite differences.
"""
from __future__ import annotations

import numpy as np

_ACT = {"tanh": np.tanh, "relu": lambda z: np.maximum(z, 0.0), "linear": lambda z: z}
_DACT = {"tanh": lambda out: 1.0 - out * out,               # derivative from the layer's output
         "relu": lambda out: (out > 0).astype(out.dtype), "linear": lambda out: 1.0}


def layer_shapes(sizes):
    """[(in, out), (out,)] per layer for ``sizes`` = [input, hidden..., output]."""
    return [s for n_in, n_out in zip(sizes[:-1], sizes[1:]) for s in ((n_in, n_out), (n_out,))]


def num_params(sizes) -> int:
    return sum(int(np.prod(s)) for s in layer_shapes(sizes))


def views(flat: np.ndarray, sizes) -> list[tuple[np.ndarray, np.ndarray]]:
    """(W, b) per layer, as views into ``flat`` (writing them writes ``flat``)."""
    out, pos, shapes = [], 0, layer_shapes(sizes)
    for w_shape, b_shape in zip(shapes[::2], shapes[1::2]):
        n_w, n_b = w_shape[0] * w_shape[1], b_shape[0]
        out.append((flat[pos:pos + n_w].reshape(w_shape), flat[pos + n_w:pos + n_w + n_b]))
        pos += n_w + n_b
    return out


class MLP:
    """``sizes`` = [input, hidden..., output]; ``params``: a flat buffer to live in (else its own)."""

    def __init__(self, sizes, activation: str = "tanh", params: np.ndarray | None = None,
                 dtype=np.float64):
        if activation not in _ACT:
            raise ValueError(f"fcnet_activation must be one of {sorted(_ACT)}, got {activation!r}")
        self.sizes, self.activation = [int(s) for s in sizes], activation
        n = num_params(self.sizes)
        self.params = np.zeros(n, dtype) if params is None else params
        if self.params.shape != (n,):
            raise ValueError(f"MLP{self.sizes} needs {n} parameters, got an array of shape {self.params.shape}")
        self.layers = views(self.params, self.sizes)
        self._tape: list = []

    def init(self, rng: np.random.Generator, out_scale: float = 1.0) -> None:
        """Normalised-column init (each unit's weights have norm 1, the last layer's ``out_scale``)."""
        for i, (w, b) in enumerate(self.layers):
            g = rng.standard_normal(w.shape)
            scale = out_scale if i == len(self.layers) - 1 else 1.0
            w[...] = g * scale / np.sqrt((g * g).sum(axis=0, keepdims=True))
            b[...] = 0.0

    def forward(self, x: np.ndarray, keep: bool = True) -> np.ndarray:
        act, last, tape, h = _ACT[self.activation], len(self.layers) - 1, [], x
        for i, (w, b) in enumerate(self.layers):
            z = h @ w + b
            out = z if i == last else act(z)
            tape.append((h, out))
            h = out
        if keep:
            self._tape = tape
        return h

    def backward(self, d_out: np.ndarray) -> np.ndarray:
        """Gradient of sum(d_out * forward(x)) with respect to params, for the last ``forward``."""
        if not self._tape:
            raise RuntimeError("MLP.backward needs a forward(x) first (it backpropagates that call)")
        grad = np.empty_like(self.params)
        dact, d, last = _DACT[self.activation], d_out, len(self.layers) - 1
        for i, (gw, gb) in reversed(list(enumerate(views(grad, self.sizes)))):
            h, out = self._tape[i]
            if i != last:
                d = d * dact(out)
            gw[...] = h.T @ d
            gb[...] = d.sum(axis=0)
            if i:
                d = d @ self.layers[i][0].T
        return grad


class Adam:
    """Adam (Kingma & Ba) on one flat parameter vector, updated in place."""

    def __init__(self, size: int, lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        self.lr, (self.b1, self.b2), self.eps = lr, betas, eps
        self.m, self.v, self.t = np.zeros(size), np.zeros(size), 0

    def step(self, params: np.ndarray, grad: np.ndarray) -> None:
        self.t += 1
        self.m = self.b1 * self.m + (1 - self.b1) * grad
        self.v = self.b2 * self.v + (1 - self.b2) * grad * grad
        m_hat = self.m / (1 - self.b1 ** self.t)
        v_hat = self.v / (1 - self.b2 ** self.t)
        params -= (self.lr * m_hat / (np.sqrt(v_hat) + self.eps)).astype(params.dtype)

    def get_state(self) -> dict:
        return {"m": self.m.copy(), "v": self.v.copy(), "t": self.t, "lr": self.lr}

    def set_state(self, state: dict) -> None:
        self.m, self.v, self.t, self.lr = state["m"].copy(), state["v"].copy(), state["t"], state["lr"]
