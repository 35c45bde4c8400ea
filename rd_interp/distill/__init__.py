"""Reverse distillation: closed-form decomposition of a large model's embedding into a small one's plus an orthogonal residual."""
