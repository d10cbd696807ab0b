"""The training loop: model versions, reward models, iterations (Django app), and `rlhf.train`,
the pure-PyTorch training code it runs."""
